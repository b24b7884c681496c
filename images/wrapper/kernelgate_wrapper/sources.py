"""Compiled-language cells: split into declarations and statements, and assemble programs.

A compiled language keeps no process between cells.  Each cell becomes one program: the
declarations kept from earlier cells, the cell's own declarations, and a ``main`` that runs
the cell's statements in order.  Contracts:

- :func:`split` divides a cell into top-level :class:`Chunk` s.  Declarations are
  ``#include``/``#define`` lines, imports and ``use`` items, functions and prototypes, types
  (struct, enum, class, typedef, trait, impl, ...), constants, and *variable declarations that
  come before the cell's first statement* (globals; one after a statement is a local of
  ``main``, so that it runs in the order written).  In C and C++ a variable whose initializer
  computes at run time (see :func:`_computed`) is a local, too.  Everything else is a
  statement.
- Each declaration has a key (kind and name, e.g. ``function:add``).  :class:`Declarations`
  keeps the newest chunk per key: redefining a function replaces it, in place.
- :func:`assemble` builds the program text.  A cell that defines ``main`` itself is a whole
  program: no ``main`` is generated and its ``main`` is never kept.  C, C++ and Go programs
  carry line directives, so diagnostics and run-time messages name ``In[n]:line``; for Rust,
  :meth:`Program.relabel` rewrites ``main.rs:line`` references of diagnostics.

Pure functions: no I/O and no toolchain.  The lexers know comments, strings, characters and
raw strings well enough to find top-level boundaries; they are not full parsers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

FAMILIES = ("c", "cpp", "go", "rust")


@dataclass(frozen=True)
class Token:
    kind: str  # "ident", "number", "string", "punct" or "directive" (C preprocessor line)
    text: str
    start: int
    end: int
    newline_before: bool


@dataclass(frozen=True)
class Chunk:
    """A top-level piece of a cell: a declaration (``key`` set) or a statement (``key`` None)."""

    text: str
    line: int  # line of the cell where the chunk starts (1-based)
    label: str  # the cell's label, e.g. "In[3]"
    kind: str  # "statement", "directive", "import", "function", "prototype", "type",
    #            "variable", "item" (Rust) or "attribute" (Rust inner attribute)
    key: str | None = None


@dataclass
class Cell:
    declarations: list[Chunk] = field(default_factory=list)
    statements: list[Chunk] = field(default_factory=list)
    defines_main: bool = False


@dataclass(frozen=True)
class Program:
    text: str
    #: (first program line, label, first cell line) for every chunk, in program order
    origins: tuple[tuple[int, str, int], ...]

    def locate(self, line: int) -> tuple[str, int] | None:
        """The (label, cell line) of program ``line``, or None for generated lines."""
        found = None
        for start, label, cell_line in self.origins:
            if start > line:
                break
            found = (label, cell_line + line - start)
        return found

    def relabel(self, text: str, source_name: str) -> str:
        """Rewrite ``<source_name>:LINE`` references in compiler output to ``In[n]:line``."""

        def swap(match: re.Match) -> str:
            where = self.locate(int(match.group(1)))
            return f"{where[0]}:{where[1]}" if where else match.group(0)

        return re.sub(re.escape(source_name) + r":(\d+)", swap, text)


#: Keys of a ``main`` function (C, C++ with either signature, Go, Rust).
MAIN_KEYS = frozenset({"function:main", "function:main/0", "function:main/2", "func:main", "fn:main"})


class Declarations:
    """Declarations of earlier cells, in order of first definition; one chunk per key."""

    def __init__(self) -> None:
        self._chunks: dict[str, Chunk] = {}

    def merged(self, new: Iterable[Chunk]) -> list[Chunk]:
        """The kept declarations with ``new`` applied (same key: replaced in place), unchanged."""
        chunks = dict(self._chunks)
        for chunk in new:
            chunks[chunk.key] = chunk
        return list(chunks.values())

    def keep(self, new: Iterable[Chunk]) -> None:
        """Keep ``new`` (the declarations of a cell that compiled), except a ``main``."""
        for chunk in new:
            if chunk.key not in MAIN_KEYS:
                self._chunks[chunk.key] = chunk

    def __len__(self) -> int:
        return len(self._chunks)


# ----------------------------------------------------------------------------- lexing

_COMMON = [
    ("space", r"\s+"),
    ("comment", r"//[^\n]*|/\*(?:.|\n)*?(?:\*/|\Z)"),
]
_STRINGS = {
    "c": [r"(?:u8|[uUL])?\"(?:\\.|[^\"\\\n])*\"?", r"(?:u8|[uUL])?'(?:\\.|[^'\\\n])*'?"],
    "go": [r"`[^`]*`?", r"\"(?:\\.|[^\"\\\n])*\"?", r"'(?:\\.|[^'\\\n])*'?"],
    "rust": [
        r"b?r(?P<hashes>#*)\"(?:.|\n)*?(?:\"(?P=hashes)|\Z)",
        r"b?\"(?:\\.|[^\"\\])*\"?",
        r"b?'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]*\}|.)|[^'\\\n])'",
    ],
}
_STRINGS["cpp"] = [r"(?:u8|[uUL])?R\"(?P<delimiter>[^()\\\s]{0,16})\((?:.|\n)*?(?:\)(?P=delimiter)\"|\Z)"] + _STRINGS["c"]
_PUNCT = r"::|->|=>|:=|==|!=|<=|>=|&&|\|\||\+\+|--|[-+*/%&|^]=|\.\.|."
_IDENT = r"[^\W\d]\w*"
_NUMBER = r"\.?\d(?:[eEpP][-+]|[\w.])*"


def _lexer(family: str) -> re.Pattern:
    strings = "|".join(f"(?:{s})" for s in _STRINGS[family])
    parts = _COMMON + [("string", strings)]
    if family == "rust":
        parts.append(("lifetime", r"'" + _IDENT))
    parts += [("ident", _IDENT), ("number", _NUMBER), ("punct", _PUNCT)]
    return re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in parts))


_LEXERS = {family: _lexer(family) for family in FAMILIES}
_DIRECTIVE = re.compile(r"#(?:\\\n|[^\n])*")


def tokenize(family: str, code: str) -> list[Token]:
    """Tokens of ``code`` without whitespace and comments; C/C++ preprocessor lines are one
    ``directive`` token each."""
    lexer = _LEXERS[family]
    tokens: list[Token] = []
    pos, newline = 0, True
    while pos < len(code):
        if family in ("c", "cpp") and code[pos] == "#" and code[code.rfind("\n", 0, pos) + 1:pos].strip() == "":
            match = _DIRECTIVE.match(code, pos)
            kind = "directive"
        else:
            match = lexer.match(code, pos)
            kind = match.lastgroup
            if kind == "lifetime":
                kind = "ident"
        text = match.group(0)
        if kind in ("space", "comment"):
            newline = newline or "\n" in text
        else:
            tokens.append(Token(kind, text, pos, match.end(), newline))
            newline = False
        pos = match.end()
    return tokens


# --------------------------------------------------------------------------- splitting


def split(family: str, code: str, label: str) -> Cell:
    """Split a cell of ``family`` ("c", "cpp", "go" or "rust") labelled ``label``."""
    tokens = tokenize(family, code)
    splitter = {"c": _split_c, "cpp": _split_c, "go": _split_go, "rust": _split_rust}[family]
    cell = Cell()
    for first, last, kind, key in splitter(tokens, family):
        start = tokens[first].start
        text = code[start:tokens[last].end]
        if kind == "variable" and cell.statements:
            kind, key = "statement", None
        chunk = Chunk(text, code.count("\n", 0, start) + 1, label, kind, key)
        if kind == "statement":
            cell.statements.append(chunk)
        elif kind != "package":
            cell.declarations.append(chunk)
            cell.defines_main = cell.defines_main or key in MAIN_KEYS
    return cell


def _text_key(kind: str, tokens: list[Token]) -> str:
    return f"{kind}:" + " ".join(t.text for t in tokens)


def _matching(tokens: list[Token], i: int) -> int:
    """Index of the bracket closing the one at ``i`` (or the last token if unclosed)."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].kind == "punct" and tokens[j].text in "([{":
            depth += 1
        elif tokens[j].kind == "punct" and tokens[j].text in ")]}":
            depth -= 1
            if depth == 0:
                return j
    return len(tokens) - 1


# C and C++ ----------------------------------------------------------------------------

_C_STATEMENT_WORDS = frozenset(
    "return goto break continue case default delete throw co_return co_yield co_await sizeof"
    " new if for while switch do else try catch".split()
)
_C_BLOCK_WORDS = frozenset("if for while switch do else try catch namespace".split())
_C_TYPE_WORDS = frozenset("struct union enum class".split())


def _split_c(tokens: list[Token], family: str):
    cpp = family == "cpp"
    i = 0
    while i < len(tokens):
        if tokens[i].kind == "directive":
            yield i, i, "directive", _directive_key(tokens[i].text)
            i += 1
            continue
        depth, brace, j = 0, None, i
        while j < len(tokens):
            tok = tokens[j]
            if tok.kind == "directive" and depth == 0:
                j -= 1
                break
            if tok.kind == "punct" and tok.text in "([{":
                if tok.text == "{" and depth == 0 and brace is None:
                    brace = j
                depth += 1
            elif tok.kind == "punct" and tok.text in ")]}":
                depth = max(depth - 1, 0)
                following = tokens[j + 1].text if j + 1 < len(tokens) else ""
                if (tok.text == "}" and depth == 0 and brace is not None
                        and _block_ends_chunk(tokens[i:brace], cpp)
                        and following not in ("else", "while", "catch")):
                    break
            elif tok.kind == "punct" and tok.text == ";" and depth == 0:
                break
            j += 1
        last = min(j, len(tokens) - 1)
        kind, key = _classify_c(tokens[i:last + 1], brace is not None and brace <= last, cpp)
        yield i, last, kind, key
        i = last + 1


def _directive_key(text: str) -> str:
    match = re.match(r"#\s*define\s+(\w+)", text)
    if match:
        return "define:" + match.group(1)
    return "directive:" + " ".join(text.split())


def _skip_template(tokens: list[Token]) -> list[Token]:
    """``tokens`` without a leading ``template <...>`` clause."""
    if len(tokens) > 1 and tokens[0].text == "template" and tokens[1].text == "<":
        depth = 0
        for k in range(1, len(tokens)):
            depth += {"<": 1, ">": -1}.get(tokens[k].text, 0)
            if depth == 0:
                return tokens[k + 1:]
    return tokens


def _block_ends_chunk(head: list[Token], cpp: bool) -> bool:
    """Whether a ``}`` closing the first top-level block ends the chunk (a function body or a
    control block), rather than a type or initializer that runs on to a ``;``."""
    head = _skip_template(head)
    if not head:
        return True
    if head[0].text in _C_BLOCK_WORDS:
        return True
    if head[0].text == "extern" and len(head) > 1 and head[1].kind == "string":
        return True
    return _function_name(head, cpp) is not None


def _type_words(tokens: list[Token], cpp: bool) -> tuple[int, int]:
    """Scan a leading ``type name`` sequence: (number of words, index after it).  A qualified
    name (``std::string``) or a template instance (``vector<int>``) counts as one word."""
    words, k = 0, 0
    while k < len(tokens):
        tok = tokens[k]
        if tok.kind == "ident":
            if tok.text in _C_STATEMENT_WORDS:
                return 0, k
            if not (k > 0 and tokens[k - 1].text == "::"):
                words += 1
            k += 1
            if cpp and k < len(tokens) and tokens[k].text == "<":
                depth = 0
                while k < len(tokens):
                    depth += {"<": 1, ">": -1}.get(tokens[k].text, 0)
                    if tokens[k].text in (";", "{", "="):
                        return 0, k
                    k += 1
                    if depth == 0:
                        break
        elif tok.text in ("*", "&", "&&", "::"):
            k += 1
        else:
            break
    return words, k


def _function_name(head: list[Token], cpp: bool) -> str | None:
    """``name/arity`` if ``head`` is ``type... name(params) qualifiers``, else None."""
    if not head or head[0].text in _C_STATEMENT_WORDS:
        return None
    words, k = _type_words(head, cpp)
    if words < 2 or k >= len(head) or head[k].text != "(" or head[k - 1].kind != "ident":
        return None
    close = _matching(head, k)
    rest = head[close + 1:]
    if rest and rest[0].text not in ("const", "noexcept", "override", "final", "->", "throw",
                                     "volatile", "&", "&&", ":", "requires"):
        return None
    start = k - 1
    while start >= 2 and head[start - 1].text == "::" and head[start - 2].kind == "ident":
        start -= 2
    name = "".join(t.text for t in head[start:k])
    params = head[k + 1:close]
    if not params or [t.text for t in params] == ["void"]:
        arity = 0
    else:
        arity = 1 + sum(1 for p, t in enumerate(params) if t.text == "," and
                        _depth_at(params, p) == 0)
    return f"{name}/{arity}"


def _depth_at(tokens: list[Token], index: int) -> int:
    depth = 0
    for t in tokens[:index]:
        if t.kind == "punct" and t.text in "([{<":
            depth += 1
        elif t.kind == "punct" and t.text in ")]}>":
            depth -= 1
    return depth


def _classify_c(chunk: list[Token], has_block: bool, cpp: bool) -> tuple[str, str | None]:
    body = _skip_template(chunk)
    if not body:
        return "statement", None
    first = body[0].text
    if first == "typedef":
        named = len(body) > 2 and body[-1].text == ";" and body[-2].kind == "ident"
        return "type", ("type:" + body[-2].text) if named else _text_key("type", body)
    if first in _C_TYPE_WORDS:
        name_at = 2 if first == "enum" and len(body) > 1 and body[1].text in ("class", "struct") else 1
        if has_block:
            named = len(body) > name_at and body[name_at].kind == "ident"
            return "type", ("type:" + body[name_at].text) if named else _text_key("type", body)
        if len(body) == name_at + 2 and body[-1].text == ";":
            return "type", _text_key("type", body)  # forward declaration
    if first in ("namespace", "static_assert") or (first == "using" and "=" not in [t.text for t in body]):
        return "type", _text_key("type", body)
    if first == "using":
        return "type", "type:" + body[1].text
    if first == "extern":
        return "prototype", _text_key("extern", body)
    if chunk[-1].text == "}":
        name = _function_name(body[:next((k for k, t in enumerate(body) if t.text == "{"), 0)], cpp)
        if name is not None:
            return "function", "function:" + (name if cpp else name.split("/")[0])
        return "statement", None
    if chunk[-1].text != ";":
        return "statement", None
    name = _function_name(body[:-1], cpp)
    if name is not None:
        paren = next(k for k, t in enumerate(body) if t.text == "(")
        params = body[paren + 1:_matching(body, paren)]
        if not any(t.kind in ("number", "string") for t in params):
            return "prototype", _text_key("prototype", body)
    words, k = _type_words(body, cpp)
    if words >= 2 and body[k - 1].kind == "ident" and body[k].text in ("=", ";", "[", ",", "(", "{", ":"):
        if _computed(body[k:], cpp):
            return "statement", None
        return "variable", "variable:" + body[k - 1].text
    return "statement", None


def _computed(declarator_rest: list[Token], cpp: bool) -> bool:
    """Whether a variable's initializer computes at run time, so the variable stays a local of
    ``main`` (a global would re-run it in every later cell; C does not even allow it).  C++:
    a call, a constructor argument list or ``new``; C: also any name (not a constant
    expression)."""
    for k, tok in enumerate(declarator_rest):
        if tok.text == "(" or tok.text == "new":
            return True
        if not cpp and tok.kind == "ident" and tok.text != "sizeof" and \
                any(t.text == "=" for t in declarator_rest[:k]):
            return True
    return False


# Go -------------------------------------------------------------------------------------

_GO_SEMICOLON_AFTER = frozenset({")", "]", "}", "++", "--"})


def _split_go(tokens: list[Token], family: str):
    i = 0
    while i < len(tokens):
        depth, j = 0, i
        while j < len(tokens):
            tok = tokens[j]
            if tok.kind == "punct" and tok.text in "([{":
                depth += 1
            elif tok.kind == "punct" and tok.text in ")]}":
                depth = max(depth - 1, 0)
            if depth == 0 and tok.text == ";" and tok.kind == "punct":
                break
            if (depth == 0 and j + 1 < len(tokens) and tokens[j + 1].newline_before
                    and (tok.kind != "punct" or tok.text in _GO_SEMICOLON_AFTER)):
                break
            j += 1
        last = min(j, len(tokens) - 1)
        yield from _classify_go(tokens, i, last)
        i = last + 1


def _classify_go(tokens: list[Token], first: int, last: int):
    chunk = tokens[first:last + 1]
    word = chunk[0].text
    second = chunk[1] if len(chunk) > 1 else None
    if word == "package":
        yield first, last, "package", None
    elif word == "import":
        yield first, last, "import", _text_key("import", chunk[1:])
    elif word == "func" and second is not None and second.kind == "ident":
        yield first, last, "function", "func:" + second.text
    elif word == "func" and second is not None and second.text == "(":
        close = _matching(chunk, 1)
        receiver = [t.text for t in chunk[2:close] if t.kind == "ident"]
        after = chunk[close + 1] if close + 1 < len(chunk) else None
        if after is not None and after.kind == "ident":
            yield first, last, "function", f"method:{receiver[-1] if receiver else ''}.{after.text}"
        else:
            yield first, last, "statement", None
    elif word in ("type", "const") and second is not None:  # constants: no run-time effects
        key = f"{word}:{second.text}" if second.kind == "ident" else _text_key(word, chunk[1:])
        yield first, last, "type", key
    elif word == "var" and second is not None:
        key = f"var:{second.text}" if second.kind == "ident" else _text_key("var", chunk[1:])
        yield first, last, "variable", key
    else:
        yield first, last, "statement", None


_GO_IMPORT_SPEC = re.compile(r"(?:([\w.]+)\s+)?(\"[^\"]*\"|`[^`]*`)")


def go_imports(chunks: Iterable[Chunk]) -> list[tuple[str, str]]:
    """The (name or "", quoted path) import specs of ``import`` chunks, each once, in order."""
    specs: dict[tuple[str, str], None] = {}
    for chunk in chunks:
        if chunk.kind == "import":
            body = re.sub(r"//[^\n]*|/\*(?:.|\n)*?\*/", "", chunk.text[len("import"):])
            for match in _GO_IMPORT_SPEC.finditer(body):
                specs[(match.group(1) or "", match.group(2))] = None
    return list(specs)


def _go_package_name(path: str) -> str:
    parts = path.strip("\"`").split("/")
    if len(parts) > 1 and re.fullmatch(r"v\d+", parts[-1]):
        parts.pop()
    return parts[-1]


# Rust -----------------------------------------------------------------------------------

_RUST_ITEMS = frozenset("fn struct enum union trait impl mod type static const use extern macro_rules".split())
_RUST_SEMICOLON_ITEMS = frozenset("use static const type extern".split())
_RUST_QUALIFIERS = frozenset("pub unsafe async default const extern".split())
_RUST_BLOCK_STATEMENTS = frozenset("if match for while loop unsafe".split())


def _split_rust(tokens: list[Token], family: str):
    i = 0
    while i < len(tokens):
        k = i
        while k + 1 < len(tokens) and tokens[k].text == "#" and tokens[k + 1].text in ("[", "!"):
            if tokens[k + 1].text == "!":  # an inner attribute: for the whole crate
                close = _matching(tokens, k + 2)
                yield k, close, "attribute", _text_key("attribute", tokens[k:close + 1])
                i = k = close + 1
            else:
                k = _matching(tokens, k + 1) + 1
        if k >= len(tokens):
            if k > i:
                yield i, k - 1, "statement", None
            break
        keyword, name, key_end = _rust_item(tokens, k)
        if keyword is None:
            last = _rust_statement_end(tokens, k)
            yield i, last, "statement", None
        else:
            last = _rust_item_end(tokens, k, keyword in _RUST_SEMICOLON_ITEMS)
            if keyword == "impl":
                head = tokens[k:next((m for m in range(k, last + 1) if tokens[m].text == "{"), last)]
                key = _text_key("impl", head)
            elif keyword == "use" or name is None:
                key = _text_key(keyword, tokens[k:last + 1])
            else:
                key = f"{'fn' if keyword == 'fn' else 'item'}:{name}"
            yield i, last, "item", key
        i = last + 1


def _rust_item(tokens: list[Token], k: int) -> tuple[str | None, str | None, int]:
    """(item keyword, item name, index) if an item starts at ``k``, else (None, None, k)."""
    m = k
    while m < len(tokens) and tokens[m].text in _RUST_QUALIFIERS:
        if tokens[m].text == "const" and m + 1 < len(tokens) and tokens[m + 1].kind == "ident" \
                and tokens[m + 1].text not in ("fn", "unsafe", "async", "extern"):
            break  # `const NAME: T = ...;`
        if tokens[m].text == "extern" and m + 1 < len(tokens) and tokens[m + 1].text == "crate":
            break
        m += 1
        if m < len(tokens) and tokens[m - 1].text == "pub" and tokens[m].text == "(":
            m = _matching(tokens, m) + 1
        if m < len(tokens) and tokens[m - 1].text == "extern" and tokens[m].kind == "string":
            m += 1
    if m >= len(tokens):
        return None, None, k
    word = tokens[m].text
    nxt = tokens[m + 1] if m + 1 < len(tokens) else None
    if word == "macro_rules" and nxt is not None and nxt.text == "!":
        name = tokens[m + 2].text if m + 2 < len(tokens) else None
        return "macro_rules", name, m
    if word == "union" and (nxt is None or nxt.kind != "ident"):
        return None, None, k
    if word not in _RUST_ITEMS:
        return None, None, k
    if word == "extern" and (nxt is None or nxt.text != "crate"):
        return None, None, k
    name = nxt.text if nxt is not None and nxt.kind == "ident" else None
    return word, name, m


def _rust_item_end(tokens: list[Token], k: int, semicolon_only: bool) -> int:
    depth = 0
    for j in range(k, len(tokens)):
        tok = tokens[j]
        if tok.kind == "punct" and tok.text in "([{":
            depth += 1
        elif tok.kind == "punct" and tok.text in ")]}":
            depth -= 1
            if depth == 0 and tok.text == "}" and not semicolon_only:
                return j
        elif tok.kind == "punct" and tok.text == ";" and depth == 0:
            return j
    return len(tokens) - 1


def _rust_statement_end(tokens: list[Token], k: int) -> int:
    first = tokens[k].text
    labelled = tokens[k].text.startswith("'") and k + 1 < len(tokens) and tokens[k + 1].text == ":"
    block = first in _RUST_BLOCK_STATEMENTS or first == "{" or labelled
    depth = 0
    for j in range(k, len(tokens)):
        tok = tokens[j]
        if tok.kind == "punct" and tok.text in "([{":
            depth += 1
        elif tok.kind == "punct" and tok.text in ")]}":
            depth -= 1
            following = tokens[j + 1].text if j + 1 < len(tokens) else ""
            if depth == 0 and tok.text == "}" and block and following not in ("else", ".", "?", ";"):
                return j
        elif tok.kind == "punct" and tok.text == ";" and depth == 0:
            return j
    return len(tokens) - 1


# --------------------------------------------------------------------------- assembling


def assemble(family: str, declarations: list[Chunk], cell: Cell) -> Program:
    """The program for ``cell`` given the kept ``declarations`` merged with the cell's own
    (see :meth:`Declarations.merged`)."""
    return {"c": _assemble_c, "cpp": _assemble_c, "go": _assemble_go, "rust": _assemble_rust}[
        family](family, declarations, cell)


class _Writer:
    def __init__(self, marker: str | None) -> None:
        self.lines: list[str] = []
        self.origins: list[tuple[int, str, int]] = []
        self.marker = marker

    def generated(self, text: str) -> None:
        self.lines.extend(text.split("\n"))

    def chunk(self, chunk: Chunk) -> None:
        if self.marker:
            self.lines.append(self.marker.format(label=chunk.label, line=chunk.line))
        self.origins.append((len(self.lines) + 1, chunk.label, chunk.line))
        self.lines.extend(chunk.text.split("\n"))

    def program(self) -> Program:
        return Program("\n".join(self.lines) + "\n", tuple(self.origins))


def _assemble_c(family: str, declarations: list[Chunk], cell: Cell) -> Program:
    out = _Writer('#line {line} "{label}"')
    for chunk in declarations:
        out.chunk(chunk)
    if not cell.defines_main:
        out.generated("int main(void) {" if family == "c" else "int main() {")
        for chunk in cell.statements:
            out.chunk(chunk)
        out.generated("}")
    else:
        for chunk in cell.statements:
            out.chunk(chunk)
    return out.program()


def _assemble_go(family: str, declarations: list[Chunk], cell: Cell) -> Program:
    code = [c for c in declarations if c.kind != "import"]
    used_text = "\n".join(c.text for c in code + cell.statements)
    out = _Writer("//line {label}:{line}")
    out.generated("package main")
    specs = [
        (name, path) for name, path in go_imports(declarations)
        if name in ("_", ".") or re.search(rf"\b{re.escape(name or _go_package_name(path))}\s*\.", used_text)
    ]
    if specs:
        out.generated("import (\n" + "\n".join(f"\t{name} {path}".replace("\t ", "\t") for name, path in specs) + "\n)")
    for chunk in code:
        out.chunk(chunk)
    if not cell.defines_main:
        out.generated("func main() {")
        for chunk in cell.statements:
            out.chunk(chunk)
        out.generated("}")
    else:
        for chunk in cell.statements:
            out.chunk(chunk)
    return out.program()


def _assemble_rust(family: str, declarations: list[Chunk], cell: Cell) -> Program:
    out = _Writer(None)
    for chunk in declarations:
        if chunk.kind == "attribute":
            out.chunk(chunk)
    # earlier cells' items are often unused by this cell: no warnings about them
    out.generated("#![allow(dead_code, unused_imports, unused_macros)]")
    for chunk in declarations:
        if chunk.kind != "attribute":
            out.chunk(chunk)
    if not cell.defines_main:
        out.generated("fn main() {")
        for chunk in cell.statements:
            out.chunk(chunk)
        out.generated("}")
    else:
        for chunk in cell.statements:
            out.chunk(chunk)
    return out.program()
