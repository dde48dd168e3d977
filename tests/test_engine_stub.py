"""src/pyintro/_engine.pyi says what the compiled module has: the same names, attributes where
the module has settable attributes, read-only properties where it has those, and the same
parameters (names, order, which have defaults) for every function and method. No model needed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyintro
from pyintro._native import _engine

STUB = Path(pyintro.__file__).with_name("_engine.pyi")


def _stub() -> ast.Module:
    return ast.parse(STUB.read_text())


def _params(node: ast.FunctionDef) -> list[tuple[str, bool]]:
    """(name, has a default) of a stub function's parameters, self included."""
    args = node.args.args
    n_plain = len(args) - len(node.args.defaults)
    return [(a.arg, i >= n_plain) for i, a in enumerate(args)]


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[(" and 1 or ch in "])" and -1 or 0
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur] if cur.strip() else parts


def _compiled_params(fn) -> list[tuple[str, bool]]:
    """(name, has a default) from a pybind11 function's signature line ("f(a: int, b: int = 1) -> x")."""
    line = fn.__doc__.strip().splitlines()[0]
    inner = line[line.index("(") + 1:line.rindex(")", 0, line.index(" -> ") if " -> " in line else len(line))]
    return [(p.split(":")[0].strip(), "=" in p) for p in _split_top(inner)]


def _is_property(node) -> bool:
    return isinstance(node, ast.FunctionDef) and any(isinstance(d, ast.Name) and d.id == "property"
                                                     for d in node.decorator_list)


def _public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def test_module_names_match():
    stub = set()
    for node in _stub().body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stub.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            stub.add(node.target.id)
    assert stub == _public(dir(_engine)), f"stub only: {stub - _public(dir(_engine))}; " \
                                          f"module only: {_public(dir(_engine)) - stub}"


CLASSES = [n for n in _stub().body if isinstance(n, ast.ClassDef)]


@pytest.mark.parametrize("node", CLASSES, ids=[c.name for c in CLASSES])
def test_class_members_match(node):
    cls = getattr(_engine, node.name)
    compiled = _public(vars(cls))
    stub = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign):
            stub[item.target.id] = "attribute"
        elif _is_property(item):
            stub[item.name] = "property"
        elif isinstance(item, ast.FunctionDef):
            stub[item.name] = "method"
    assert _public(stub) == compiled, f"stub only: {_public(stub) - compiled}; module only: {compiled - _public(stub)}"
    for name, kind in stub.items():
        member = vars(cls)[name]
        if kind == "method":
            assert not isinstance(member, property), f"{node.name}.{name} is a property, not a method"
            continue
        assert isinstance(member, property), f"{node.name}.{name} is not a property"
        writable = member.fset is not None
        assert writable == (kind == "attribute"), \
            f"{node.name}.{name}: the stub says {kind}, the module's is {'settable' if writable else 'read-only'}"


def _functions():
    for node in _stub().body:
        if isinstance(node, ast.FunctionDef):
            yield node.name, node, getattr(_engine, node.name), False
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not _is_property(item):
                    yield f"{node.name}.{item.name}", item, getattr(getattr(_engine, node.name), item.name), True


FUNCTIONS = list(_functions())


@pytest.mark.parametrize("name,node,fn,method", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_signatures_match(name, node, fn, method):
    stub = _params(node)
    compiled = _compiled_params(fn)
    assert [n for n, _ in stub] == [n for n, _ in compiled], f"{name}: parameters {stub} vs {compiled}"
    assert [d for _, d in stub] == [d for _, d in compiled], f"{name}: defaults {stub} vs {compiled}"
