"""Word lists for concept vectors.

``BASELINE_WORDS``: common concrete nouns whose mean activation is subtracted from a
concept's activation (the mean-subtraction baseline of Lindsey 2025, "Emergent
introspective awareness in large language models"). The list here is our own.

``CONCEPT_WORDS``: the concepts injected in that post's experiments.
"""

from __future__ import annotations

BASELINE_WORDS: tuple[str, ...] = (
    "Apples", "Bicycles", "Buttons", "Candles", "Carpets", "Chairs", "Clocks", "Coins",
    "Combs", "Cups", "Curtains", "Doors", "Drums", "Envelopes", "Fences", "Forks",
    "Gloves", "Hammers", "Hats", "Helmets", "Jackets", "Jars", "Kettles", "Keys",
    "Ladders", "Lamps", "Leaves", "Lemons", "Magnets", "Maps", "Nails", "Napkins",
    "Needles", "Notebooks", "Onions", "Ovens", "Paintbrushes", "Pans", "Pencils", "Pillows",
    "Plates", "Pliers", "Pockets", "Potatoes", "Ropes", "Rugs", "Saucers", "Scarves",
    "Scissors", "Screws", "Shelves", "Shoes", "Shovels", "Sinks", "Socks", "Spoons",
    "Staplers", "Stones", "Stools", "Tables", "Tents", "Tiles", "Toasters", "Towels",
    "Trays", "Tires", "Trucks", "Umbrellas", "Vases", "Wallets", "Wheels", "Windows",
    "Baskets", "Benches", "Blankets", "Boots", "Bottles", "Bowls", "Boxes", "Bricks",
    "Brooms", "Buckets", "Cabinets", "Carrots", "Chains", "Cushions", "Desks", "Feathers",
    "Flags", "Jugs", "Kites", "Mugs", "Pebbles", "Pipes", "Rings", "Sacks",
    "Sandals", "Tablecloths", "Wagons", "Whistles",
)

CONCEPT_WORDS: tuple[str, ...] = (
    "Dust", "Satellites", "Trumpets", "Origami", "Illusions", "Cameras", "Lightning",
    "Constellations", "Treasures", "Phones", "Trees", "Avalanches", "Mirrors", "Fountains",
    "Quarries", "Sadness", "Xylophones", "Secrecy", "Oceans", "Information", "Deserts",
    "Kaleidoscopes", "Sugar", "Vegetables", "Poetry", "Aquariums", "Bags", "Peace",
    "Caverns", "Memories", "Frosts", "Volcanoes", "Boulders", "Harmonies", "Masquerades",
    "Rubber", "Plastic", "Blood", "Amphitheaters", "Contraptions", "Youths", "Dynasties",
    "Snow", "Dirigibles", "Algorithms", "Denim", "Monoliths", "Milk", "Bread", "Silver",
)
