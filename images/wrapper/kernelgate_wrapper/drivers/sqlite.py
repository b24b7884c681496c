"""SQLite driver of the wrapper kernel (protocol: kernelgate_wrapper/sessions.py).

One in-memory database, in autocommit mode, for the kernel's life.  A cell is split into
statements; each statement that returns rows gives a table (text/plain and text/html, at most
MAX_ROWS rows): the last one is the cell's result, earlier ones are display events.
SIGINT interrupts the running statement (sqlite3's progress handler lets the handler run).
"""

import html
import json
import os
import signal
import sqlite3

MAX_ROWS = 1000


def statements(sql: str):
    """The statements of ``sql``, each ending with its ``;`` (the last one may lack it)."""
    start = 0
    for end, char in enumerate(sql):
        if char == ";" and sqlite3.complete_statement(sql[start:end + 1]):
            yield sql[start:end + 1]
            start = end + 1
    if sql[start:].strip():
        yield sql[start:]


def table(cursor: sqlite3.Cursor) -> dict:
    """A MIME bundle of the rows ``cursor`` returns."""
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchmany(MAX_ROWS + 1)
    more = len(rows) > MAX_ROWS
    cells = [["NULL" if v is None else str(v) for v in row] for row in rows[:MAX_ROWS]]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in cells)
    note = f"(only the first {MAX_ROWS} rows are shown)"
    if more:
        lines.append(note)
    return {
        "text/plain": "\n".join(lines),
        "text/html": f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                     + (f"<p>{note}</p>" if more else ""),
    }


def run(db: sqlite3.Connection, code: str, events) -> dict:
    """Execute the statements of ``code``; the reply event."""
    result = None
    for number, statement in enumerate(statements(code), 1):
        try:
            cursor = db.execute(statement)
            if cursor.description is not None:
                if result is not None:
                    events.write(json.dumps({"display": result}) + "\n")
                    events.flush()
                result = table(cursor)
        except sqlite3.Error as e:
            name = type(e).__name__
            return {"status": "error", "ename": name, "evalue": str(e),
                    "traceback": [f"{name}: {e}", f"in statement {number}: {statement.strip()}"]}
    return {"status": "ok", "data": result}


def main() -> None:
    commands = os.fdopen(int(os.environ.pop("KERNELGATE_COMMAND_FD")), "r", encoding="utf-8")
    events = os.fdopen(int(os.environ.pop("KERNELGATE_EVENT_FD")), "w", encoding="utf-8")
    db = sqlite3.connect(":memory:", isolation_level=None)
    signal.signal(signal.SIGINT, lambda signum, frame: db.interrupt())
    db.set_progress_handler(lambda: 0, 10000)
    for line in commands:
        reply = run(db, json.loads(line)["code"], events)
        events.write(json.dumps(reply) + "\n")
        events.flush()


if __name__ == "__main__":
    main()
