"""Spreadsheets (CSV or XLSX) in and out.

In: good rows in, bad rows named by number, never a crash. Shared by the roster and the
programme's libraries: each says how one row becomes a record, this module does the rest
(reading, header titles in English or Chinese, empty rows, unreadable files, progress).

Out: every CSV and XLSX the product writes is made here, each text cell through ``cell``, so
that no name or id becomes a formula in the admin's spreadsheet program."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass
class ImportResult:
    rows: int = 0
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)


# What makes a spreadsheet program read text as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> object:
    """A value to write into a spreadsheet: text that starts like a formula gets a leading
    ``'`` (OWASP), in XLSX too, where a text cell starting with ``=`` turns into a formula as
    soon as someone edits it. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_bytes(rows: Iterable[Iterable[object]]) -> bytes:
    """UTF-8 with a BOM, so that Excel opens it in Chinese."""
    buf = io.StringIO()
    w = csv.writer(buf)
    for row in rows:
        w.writerow([cell(v) for v in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def xlsx_bytes(sheets: Iterable[tuple[str, Iterable[Iterable[object]]]]) -> bytes:
    """A workbook of ``(title, rows)`` sheets, in that order."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    for title, rows in sheets:
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append([cell(v) for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


class RowError(ValueError):
    """One row cannot be imported; the reason goes into the result with its number."""


def read_rows(path: Path) -> Iterator[list[str]]:
    """The rows of a CSV (UTF-8, BOM or not) or XLSX file, as stripped strings."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        for row in wb.active.iter_rows(values_only=True):
            yield ["" if v is None else str(v).strip() for v in row]
        wb.close()
    else:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
        yield from ([c.strip() for c in r] for r in csv.reader(io.StringIO(text)))


def header_index(
    header: list[str] | None, headers: dict[str, tuple[str, ...]], required: tuple[str, ...]
) -> tuple[dict[str, int], str | None]:
    """Which column holds each field (English or Chinese titles); an error for row 1."""
    if header is None:
        return {}, "the file is empty"
    index: dict[str, int] = {}
    for key, names in headers.items():
        for i, title in enumerate(header):
            if title.strip().lower() in names:
                index[key] = i
                break
    missing = [k for k in required if k not in index]
    return index, (f"missing columns: {', '.join(missing)}" if missing else None)


def scan(
    rows: Iterator[list[str]],
    headers: dict[str, tuple[str, ...]],
    required: tuple[str, ...],
    parse_row: Callable[[Callable[[str], str]], T],
    progress: Callable[[int], None] | None = None,
) -> tuple[list[T], ImportResult]:
    """Turn every non-empty row into a record with ``parse_row(get)``, where ``get(field)`` is
    that row's cell; a row whose parse raises RowError is reported by its number."""
    result = ImportResult()
    good: list[T] = []
    index, problem = header_index(next(rows, None), headers, required)
    if problem:
        result.errors.append((1, problem))
        return good, result
    for number, row in enumerate(rows, start=2):
        if not any(row):
            continue
        result.rows += 1
        if progress and result.rows % 1000 == 0:
            progress(result.rows)

        def get(key: str, row: list[str] = row) -> str:
            i = index.get(key)
            return row[i] if i is not None and i < len(row) else ""

        try:
            good.append(parse_row(get))
        except RowError as exc:
            result.errors.append((number, str(exc)))
    if progress:
        progress(result.rows)
    return good, result


def import_file(
    path: Path,
    headers: dict[str, tuple[str, ...]],
    required: tuple[str, ...],
    parse_row: Callable[[Callable[[str], str]], T],
    save: Callable[[list[T]], int],
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Read ``path``, keep the good rows (``save`` returns how many it stored)."""
    try:
        good, result = scan(read_rows(path), headers, required, parse_row, progress)
    except (OSError, ValueError, KeyError) as exc:  # unreadable or not a spreadsheet
        return ImportResult(errors=[(0, f"cannot read {path.name}: {exc}")])
    except Exception as exc:  # noqa: BLE001 - openpyxl raises its own types on bad files
        return ImportResult(errors=[(0, f"cannot read {path.name}: {type(exc).__name__}")])
    result.imported = save(good)
    return result
