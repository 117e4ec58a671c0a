"""Behaviour-changing edits (mutants) of one Python module, found from its syntax tree.

Each mutant is one text edit of the module's source: an operator swapped, a comparison
flipped, a number nudged, a sign dropped, a condition negated, a slice bound shifted or a
statement removed. The edit keeps every line where it was (a removed statement leaves
``pass`` and the same number of lines), so tracebacks, Numba's per-line cache entries and
the recorded locations stay comparable between the original and the mutant.

Left alone because no edit there changes what the module computes: docstrings, type
annotations, decorators (``@njit(cache=True)``), ``__all__``, f-string pieces and string
literals other than the ones compared with ``==``/``in`` (mode names).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

BINARY = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"),
          ast.Div: ("/", "*"), ast.FloorDiv: ("//", "/"), ast.Mod: ("%", "//"),
          ast.Pow: ("**", "*"), ast.LShift: ("<<", ">>"), ast.RShift: (">>", "<<"),
          ast.BitAnd: ("&", "|"), ast.BitOr: ("|", "&"), ast.BitXor: ("^", "&")}
COMPARE = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="),
           ast.GtE: (">=", ">"), ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="),
           ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is"),
           ast.In: ("in", "not in"), ast.NotIn: ("not in", "in")}
BOOLEAN = {ast.And: ("and", "or"), ast.Or: ("or", "and")}
REMOVABLE = (ast.Expr, ast.AugAssign, ast.Raise, ast.Continue, ast.Break)


@dataclass(frozen=True)
class Mutant:
    """One edit: source characters [start, end) become ``new``; ``line``/``col`` (1-based
    line, 0-based column) name where, ``operator`` the kind of edit, ``old`` what it
    replaces."""

    start: int
    end: int
    old: str
    new: str
    line: int
    col: int
    operator: str

    @property
    def edit(self) -> str:
        """The edit as one line: ``old -> new`` (statements shortened)."""
        return f"{_one_line(self.old)} -> {_one_line(self.new)}"

    def apply(self, source: str) -> str:
        return source[:self.start] + self.new + source[self.end:]


def _one_line(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


class _Offsets:
    """Character offsets of (line, UTF-8 byte column) positions, as ``ast`` gives them."""

    def __init__(self, source: str):
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def __call__(self, line: int, byte_col: int) -> int:
        text = self.lines[line - 1].encode()[:byte_col].decode()
        return self.starts[line - 1] + len(text)

    def col(self, line: int, byte_col: int) -> int:
        return len(self.lines[line - 1].encode()[:byte_col].decode())


def find_mutants(source: str) -> list[Mutant]:
    """Every mutant of ``source``, in source order."""
    finder = _Finder(source)
    finder.visit(ast.parse(source))
    return sorted(set(finder.found), key=lambda m: (m.start, m.end, m.operator, m.new))


class _Finder(ast.NodeVisitor):
    def __init__(self, source: str):
        self.source = source
        self.offset = _Offsets(source)
        self.found: list[Mutant] = []

    # -- helpers ---------------------------------------------------------------------
    def span(self, node) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),
                self.offset(node.end_lineno, node.end_col_offset))

    def add(self, start, end, new, operator):
        line = self.source.count("\n", 0, start) + 1
        col = start - (self.source.rfind("\n", 0, start) + 1)
        self.found.append(Mutant(start, end, self.source[start:end], new, line, col,
                                 operator))

    def replace_node(self, node, new, operator):
        start, end = self.span(node)
        self.add(start, end, new, operator)

    def operator_between(self, left, right, symbol, new, operator):
        """Replace ``symbol`` in the gap between nodes ``left`` and ``right`` (only
        brackets, blanks, comments and the operator itself lie there)."""
        gap_start = self.offset(left.end_lineno, left.end_col_offset)
        gap_end = self.offset(right.lineno, right.col_offset)
        at = _find_code(self.source, symbol, gap_start, gap_end)
        if at is not None:
            self.add(at, at + len(symbol), new, operator)

    # -- what is not mutated ---------------------------------------------------------
    def visit_FunctionDef(self, node):
        self._body_without_docstring(node)
        for arg in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(arg)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        for base in node.bases:
            self.visit(base)
        for keyword in node.keywords:
            self.visit(keyword)
        self._body_without_docstring(node)

    def visit_Module(self, node):
        self._body_without_docstring(node)

    def _body_without_docstring(self, node):
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        for statement in body:
            self.visit(statement)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def visit_Assign(self, node):
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return
        self.generic_visit(node)

    def visit_JoinedStr(self, node):
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                self.visit(value.value)

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # an attribute docstring
        self.remove(node)
        self.generic_visit(node)

    def visit_Import(self, node):
        pass

    visit_ImportFrom = visit_Import

    # -- mutations -------------------------------------------------------------------
    def remove(self, node):
        start, end = self.span(node)
        self.add(start, end, "pass" + "\n" * self.source.count("\n", start, end),
                 "remove statement")

    def visit_AugAssign(self, node):
        symbol, new = BINARY.get(type(node.op), (None, None))
        if symbol:
            self.operator_between(node.target, node.value, symbol + "=", new + "=",
                                  "augmented assignment")
        self.remove(node)
        self.generic_visit(node)

    def visit_Raise(self, node):
        self.remove(node)
        self.generic_visit(node)

    def visit_Continue(self, node):
        self.remove(node)

    visit_Break = visit_Continue

    def visit_BinOp(self, node):
        symbol, new = BINARY.get(type(node.op), (None, None))
        if symbol:
            self.operator_between(node.left, node.right, symbol, new, "binary operator")
        self.generic_visit(node)

    def visit_Compare(self, node):
        operands = [node.left] + node.comparators
        for left, op, right in zip(operands, node.ops, operands[1:]):
            symbol, new = COMPARE[type(op)]
            self.operator_between(left, right, symbol, new, "comparison")
            for side in (left, right):
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    self.replace_node(side, repr(side.value + "XX"), "string")
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        symbol, new = BOOLEAN[type(node.op)]
        for left, right in zip(node.values, node.values[1:]):
            self.operator_between(left, right, symbol, new, "boolean operator")
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
            start, end = self.span(node)
            operand = start + (3 if isinstance(node.op, ast.Not) else 1)
            while self.source[operand] in " \t":
                operand += 1
            kind = {ast.USub: "drop sign", ast.Not: "drop not", ast.Invert: "drop invert"}
            self.add(start, end, self.source[operand:end], kind[type(node.op)])
        self.generic_visit(node)

    def negate(self, test):
        start, end = self.span(test)
        self.add(start, end, f"not ({self.source[start:end]})", "negate condition")

    def visit_If(self, node):
        self.negate(node.test)
        self.generic_visit(node)

    visit_While = visit_If
    visit_IfExp = visit_If

    def visit_Constant(self, node):
        value = node.value
        if isinstance(value, bool):
            self.replace_node(node, repr(not value), "boolean constant")
        elif isinstance(value, int):
            self.replace_node(node, repr(value + 1), "number")
        elif isinstance(value, float):
            self.replace_node(node, repr(value + 1.0), "number")

    def visit_Slice(self, node):
        for bound in (node.lower, node.upper):
            if bound is not None:
                start, end = self.span(bound)
                self.add(start, end, f"({self.source[start:end]}) + 1", "slice bound")
        self.generic_visit(node)

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id == "slice":
            for bound in node.args[:2]:
                start, end = self.span(bound)
                self.add(start, end, f"({self.source[start:end]}) + 1", "slice bound")
        self.generic_visit(node)


def _find_code(source: str, symbol: str, start: int, end: int) -> int | None:
    """Offset of ``symbol`` in ``source[start:end]`` outside comments (the gap between two
    operands holds only brackets, blanks, comments and the operator)."""
    at = start
    while at < end:
        if source[at] == "#":
            at = source.find("\n", at, end)
            if at < 0:
                return None
        elif source.startswith(symbol, at):
            return at
        else:
            at += 1
    return None
