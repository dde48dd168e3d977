"""The experiments, each a function that returns tidy rows (and writes them as they finish),
built from three interchangeable parts: stimuli (prompts and word lists, as data), a
manipulation (which vector, where, how strong) and a readout (a log-probability score, a
forced choice, a cosine, or a judge).

- ``post``: the follow-up post's Yes/No sweep, introspection question beside controls.
- ``questions``: its introspection and control questions.
- ``compare``: the same sweep across a quantization ladder.
- ``detection``: experiment 1 of Lindsey (2025), free-text trials graded by keywords.
"""
