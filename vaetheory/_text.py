"""Delimited text (CSV, TSV, whitespace-separated) -> float64 row blocks, read once.

The file (or pipe, or stdin) is read in binary blocks of whole lines (~16 MiB); each block is
parsed by pyarrow's CSV parser when pyarrow is installed (~2.5x less CPU; bench/bench_io.py) and
by numpy's C parser (``np.loadtxt`` on the block's lines) otherwise, or whenever pyarrow does not
accept the block (whitespace-only lines, comment lines, runs of spaces): both give the same
float64 values (each is correctly rounded), and every error comes from one Python diagnosis of
the block, so messages do not depend on which parser ran. Only the selected columns are
converted (a text column elsewhere in the file is fine) and quoted numbers (``"1.5"``) parse.

Conventions of messages and notes (one for every format, see :mod:`vaetheory.io`): lines, rows
and columns count from 1; a text cell is ``line L, column C ('name')`` with the header's column
name when there is one.
"""

from __future__ import annotations

import csv
import re
import zlib
from typing import Iterator, List, Optional

import numpy as np

from .errors import DataError, ParameterError

BLOCK_BYTES = 1 << 24        # bytes of text per parsed block
HINT_BYTES = 100 << 20       # text inputs larger than this get the "convert to .npy" hint
_SAMPLE_LINES = 10           # content lines looked at to choose the delimiter
_DELIMITERS = (",", "\t", ";", "|")
_NAMES = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "'|'"}
_DELIMITER_WORDS = {"comma": ",", "tab": "\t", "\\t": "\t", "semicolon": ";", "pipe": "|",
                    "space": None, "whitespace": None, " ": None}
READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError

#: CPU of reading a CSV / of reading the same data as .npy (bench/bench_io.py, 10^6 x 100, one
#: BLAS thread: 12x with pyarrow's parser, 28x with numpy's): what the "convert it once" hint says
NPY_SPEEDUP = {"pyarrow": 10, "numpy": 25}


def show(path):
    """The path as it appears in messages: quoted, on one line."""
    return "'" + str(path).replace("\n", "\\n").replace("\r", "\\r") + "'"


def is_number(token):
    """True when ``np.loadtxt`` would parse ``token`` as a float (Python's float, minus '_')."""
    if not token or "_" in token:
        return False
    try:
        float(token)
    except ValueError:
        return False
    return True


def unquote(name):
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        return name[1:-1]
    return name


def parse_delimiter(value):
    """A delimiter option value -> one character, or None for runs of whitespace.

    Accepts one character (``,`` ``;`` ``|`` a tab), the words ``comma``, ``tab``,
    ``semicolon``, ``pipe``, ``space``/``whitespace`` (runs of spaces and tabs), or ``\\t``.
    """
    if value is None:
        return None
    text = str(value)
    if text.lower() in _DELIMITER_WORDS:
        return _DELIMITER_WORDS[text.lower()]
    if len(text) != 1 or text in "\"'#\n\r" or text.isalnum() or text in ".+-":
        raise ParameterError(f"delimiter {value!r}: give one character such as ',' ';' '|', or "
                             "tab / whitespace",
                             cli=f"--delimiter {value!r}: give one character such as ',' ';' "
                                 "'|', or tab / whitespace")
    return text


def _word(delim):
    return "whitespace" if delim is None else {"\t": "tab"}.get(delim, delim)


class TextReader:
    """Delimited text from a binary stream ``fh`` (opened once; never reopened or rewound).

    On construction the first block is read, the delimiter chosen (unless given) and the header
    decided (``header``: ``"auto"``, ``"yes"`` or ``"no"``); :meth:`blocks` then parses the
    selected columns block by block. ``notes`` collects what auto-detection was unsure of.
    """

    def __init__(self, fh, label, ext, *, header="auto", delimiter=None, delimiter_given=False,
                 close=None):
        self.fh, self.label, self.ext, self._close = fh, label, ext, close
        self.notes: List[str] = []
        self.bytes_read = 0
        self._last = None  # (first data row, first line, block text, simple) of the last block
        self._arrow = _pyarrow_csv()
        try:
            # read until the complete lines hold two content lines (a header and a data row may
            # sit behind blank and comment lines, or behind a first line longer than a block)
            first, eof = self._read(), False
            eof = not first
            while not eof:
                complete = first[:first.rfind(b"\n") + 1]
                if len(self._sample(complete)) >= 2:
                    break
                more = self._read()
                eof = not more
                first += more
        except READ_ERRORS as exc:
            raise DataError(f"cannot read {label}: {_os_reason(exc)}") from None
        if first.startswith(b"\xef\xbb\xbf"):
            first = first[3:]
        sample = self._sample(first)  # [(line number, stripped text)]
        if not sample:
            raise DataError(f"{label} is empty (no data lines)")
        texts = [s for _, s in sample]
        self.delimiter = delimiter if delimiter_given else self._sniff(texts)
        first_no, first_line = sample[0]
        if delimiter_given and self.delimiter is not None and self.delimiter not in first_line:
            other = next((d for d in _DELIMITERS if d in first_line), None)
            if other is not None:
                given = _NAMES.get(self.delimiter, repr(self.delimiter))
                msg = (f"{label} line {first_no} has no {given} (the delimiter given) but "
                       f"{_NAMES[other]}")
                raise DataError(f"{msg}: give delimiter={other!r}, or leave it out to detect it",
                                cli=f"{msg}: give --delimiter '{_word(other)}', or leave it out "
                                    "to detect it")
        tokens = [unquote(t) for t in self.split(first_line)]
        self.n_cols = len(tokens)
        self.first_line = first_no
        self.header = None
        if header == "yes" or (header == "auto" and self._is_header(tokens, first_no, first_line)):
            self.header = tokens
            if len(sample) == 1:
                raise DataError(f"{label} has a header line but no data rows")
            self.data_line = first_no + 1
        else:
            self.data_line = first_no
        self.header_forced_off = header == "no"
        # the bytes after the header line (or from the first line) start the first data block
        skip = self.data_line - 1
        pos = 0
        for _ in range(skip):
            pos = first.index(b"\n", pos) + 1
        self._pending = first[pos:]
        self._arrow_delim = self.delimiter
        if self.delimiter is None:  # pyarrow has no "runs of whitespace": single spaces only
            data = [s for n, s in sample if n >= self.data_line]
            plain = all("  " not in s and "\t" not in s for s in data)
            self._arrow_delim = " " if plain else None

    # ---- reading
    def _read(self):
        data = self.fh.read(BLOCK_BYTES)
        self.bytes_read += len(data)
        return data

    def _sample(self, first):
        """(line number, stripped text) of the first content lines of the first block."""
        out = []
        pos, lineno = 0, 0
        while pos < len(first) and len(out) < _SAMPLE_LINES:
            end = first.find(b"\n", pos)
            end = len(first) if end < 0 else end
            raw, pos, lineno = first[pos:end], end + 1, lineno + 1
            try:
                s = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise DataError(f"cannot read {self.label}: not UTF-8 text (byte "
                                f"0x{raw[exc.start]:02x} on line {lineno})") from None
            if s and not s.startswith("#"):
                out.append((lineno, s))
        return out

    def _sniff(self, lines):
        own = {".csv": ",", ".tsv": "\t"}.get(self.ext)
        for d in ((own,) if own else ()) + _DELIMITERS:  # on every line: the surest sign
            if all(d in s for s in lines):
                return d
        if any((own or ",") in s for s in lines):  # .txt and stdin: commas first
            return own or ","
        if any(len(s.split()) > 1 and all(is_number(t) for t in s.split()) for s in lines):
            return None  # numbers separated by whitespace (despite the extension)
        if own is None and lines and len(lines[-1].split()) > 1:
            return None
        return own  # a single column

    def split(self, line):
        if self.delimiter is None:
            return [unquote(t) for t in line.split()]
        if '"' in line:
            return [t.strip() for t in next(csv.reader([line], delimiter=self.delimiter))]
        return [t.strip() for t in line.strip().split(self.delimiter)]

    def _is_header(self, tokens, lineno, line):
        numeric = [is_number(t) for t in tokens]
        if all(numeric):
            if len(tokens) >= 2 and tokens == [str(i) for i in range(len(tokens))]:
                self.notes.append(
                    f"{self.label} line {lineno} ({_short(line)}) is read as a header: its values "
                    f"are 0, 1, ..., {len(tokens) - 1}, the column names pandas writes; if it is "
                    "a data row, give --header no")
                return True
            return False
        filled = [n for n, t in zip(numeric, tokens) if t]
        pandas_index = (not tokens[0] and len(tokens) >= 2
                        and tokens[1:] == [str(i) for i in range(len(tokens) - 1)])
        if any(filled) and not pandas_index:
            k = sum(filled)
            self.notes.append(
                f"{self.label} line {lineno} ({_short(line)}) is read as a header (column names) "
                f"although {k} of its {len(tokens)} values are numbers; if it is a data row, "
                "give --header no")
        return True

    n_rows = None  # not known before the file is read

    def describe(self):
        """What the provenance says about how the text was read."""
        fmt = {".csv": "csv", ".tsv": "tsv", ".txt": "txt"}.get(self.ext, "text")
        return {"format": fmt, "delimiter": _word(self.delimiter),
                "header": self.header is not None}

    # ---- names and locations
    def column(self, j):
        name = f"column {j + 1}"
        if self.header is not None and j < len(self.header):
            name += f" ('{self.header[j]}')"
        return name

    def where(self, row, col):
        """``line L, column C ('name')`` of data row ``row`` (0-based) of the last block."""
        line = None
        if self._last is not None:
            row0, line0, text, simple = self._last
            if row >= row0:
                if simple:
                    line = line0 + row - row0
                else:
                    k = row - row0
                    for i, raw in enumerate(text.split("\n")):
                        s = raw.strip()
                        if s and not s.startswith("#"):
                            if k == 0:
                                line = line0 + i
                                break
                            k -= 1
        place = f"line {line}" if line is not None else f"data row {row + 1}"
        return f"{place}, {self.column(col)}"

    def _expected(self):
        src = "the header" if self.header is not None else "the first data line"
        return f"expected {self.n_cols} as on {src} (line {self.first_line})"

    # ---- parsing
    def blocks(self, cols: Optional[np.ndarray] = None,
               chunk_rows: Optional[int] = None) -> Iterator[np.ndarray]:
        """float64 blocks of the columns ``cols`` (all when None), in that order.

        ``chunk_rows``: rows per block (default: the ~16 MiB text blocks as they come).
        """
        use = None if cols is None else [int(c) for c in cols]
        width = self.n_cols if use is None else len(use)
        if use is not None and use == list(range(self.n_cols)):
            use = None  # every column, in order: np.loadtxt then checks every row's width
        row, line0 = 0, self.data_line
        carry = None
        try:
            for block in self._raw_blocks():
                values = self._parse(block, line0, use, width)
                simple = values.shape[0] == _n_lines(block)
                self._last = (row, line0, None if simple else block.decode("utf-8", "replace"),
                              simple)
                row += values.shape[0]
                line0 += block.count(b"\n")
                if chunk_rows is None:
                    if values.shape[0]:
                        yield values
                    continue
                carry = values if carry is None else np.concatenate([carry, values])
                while carry.shape[0] >= chunk_rows:
                    yield carry[:chunk_rows]
                    carry = carry[chunk_rows:]
        except READ_ERRORS as exc:
            raise DataError(f"cannot read {self.label}: {_os_reason(exc)}") from None
        finally:
            self.close()
        if carry is not None and carry.shape[0]:
            yield carry

    def close(self):
        """Close the input (not stdin); the reader reads it once."""
        if self._close is not None:
            self._close()
            self._close = None

    def _raw_blocks(self):
        """Blocks of whole lines (newlines normalised to \\n), the first one from the sniffed
        bytes."""
        pending, self._pending = self._pending, b""
        fresh = False  # the sniffed bytes are parsed before anything more is read
        while True:
            data = self._read() if fresh else b""
            eof = fresh and not data
            fresh = True
            buf = pending + data if data else pending
            if eof:
                block, pending = buf, b""
            else:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    pending = buf
                    continue
                block, pending = buf[:cut + 1], buf[cut + 1:]
            if block:
                if b"\r" in block:
                    block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                yield block
            if eof:
                return

    def end_notes(self):
        """Notes known only at the end of the file: the size hint for large text inputs."""
        if self.bytes_read <= HINT_BYTES:
            return []
        factor = NPY_SPEEDUP["pyarrow" if self._arrow is not None else "numpy"]
        return [f"{self.label} is {self.bytes_read / 2**20:.0f} MiB of text: parsing it is most "
                f"of this run; convert it once to .npy and later runs read it with ~{factor}x "
                "less CPU (python -c \"import vaetheory.io as v; v.convert('IN.csv', "
                "'OUT.npy')\", with the same selection options as keywords)"]

    def _parse(self, block, line0, use, width):
        arrow = self._arrow is not None and self._arrow_delim is not None
        if arrow:
            values = self._parse_arrow(block, use, width)
            if values is not None:
                return values
        text = block.decode("utf-8", "replace")
        if "#" not in text and text.strip():
            try:
                values = np.loadtxt(text.split("\n"), delimiter=self.delimiter, comments=None,
                                    quotechar='"' if '"' in text and self.delimiter else None,
                                    usecols=use, dtype=np.float64, ndmin=2)
            except ValueError:
                values = None
            if values is not None and values.shape[1] == width and self._rows_complete(
                    text, values.shape[0], use):
                if arrow:  # pyarrow does not take this file's dialect: stop asking it
                    self._arrow_delim = None
                return values
        return self._parse_slowly(text, line0, use, width)

    def _parse_arrow(self, block, use, width):
        pa, pcsv = self._arrow
        names = [str(j) for j in range(self.n_cols)]
        keep = names if use is None else [names[j] for j in use]
        try:
            table = pcsv.read_csv(
                pa.py_buffer(block),
                read_options=pcsv.ReadOptions(column_names=names, use_threads=True),
                parse_options=pcsv.ParseOptions(delimiter=self._arrow_delim, quote_char='"',
                                                ignore_empty_lines=True),
                convert_options=pcsv.ConvertOptions(
                    include_columns=keep, column_types={n: pa.float64() for n in keep},
                    null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False))
        except pa.lib.ArrowException:
            return None  # the numpy path decides (and diagnoses)
        out = np.empty((table.num_rows, width))
        for i, col in enumerate(table.columns):
            out[:, i] = col.to_numpy()
        return out

    def _rows_complete(self, text, n_rows, use):
        """With a column subset np.loadtxt does not check that rows have every field: count."""
        if use is None:
            return True
        if '"' in text:
            return False  # quoted fields may hold delimiters: check line by line
        if self.delimiter is None:
            return len(text.split()) == n_rows * self.n_cols
        return text.count(self.delimiter) == n_rows * (self.n_cols - 1)

    def _parse_slowly(self, text, line0, use, width):
        """Line by line (blank lines, comments, quotes, ragged or bad rows): raise the first
        problem with its line and column, else parse the cleaned lines."""
        lines, numbers = [], []
        for i, raw in enumerate(text.split("\n")):
            s = raw.strip()
            if s and not s.startswith("#"):
                lines.append(s)
                numbers.append(line0 + i)
        if not lines:
            return np.empty((0, width))
        self._diagnose(lines, numbers, use)
        quote = '"' if any('"' in s for s in lines) and self.delimiter else None
        try:
            values = np.loadtxt(lines, delimiter=self.delimiter, comments=None, quotechar=quote,
                                usecols=use, dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise DataError(f"{self.label} lines {numbers[0]}-{numbers[-1]}: "
                            f"{str(exc).splitlines()[0]}") from None
        return values

    def _diagnose(self, lines, numbers, use):
        cols = range(self.n_cols) if use is None else use
        for line, lineno in zip(lines, numbers):
            tokens = self.split(line)
            if len(tokens) != self.n_cols:
                raise DataError(f"{self.label} line {lineno}: {len(tokens)} values, "
                                f"{self._expected()}; every row needs the same number of values")
            for j in cols:
                t = unquote(tokens[j])
                if not is_number(t):
                    self._bad_value(lineno, j, t)

    def _bad_value(self, lineno, j, t):
        what = "empty value" if not t else f"non-numeric value {_short(t)}"
        if "\ufffd" in t:
            what = "bytes that are not UTF-8 text"
        hint = "every value must be a number (select numeric columns or clean the file)"
        lib, cli = hint, hint
        other = next((d for d in _DELIMITERS if d != self.delimiter and d in t), None)
        if self.delimiter == ";" and re.fullmatch(r"[+-]?\d*,\d+(e[+-]?\d+)?", t, re.I):
            lib = cli = ("it has a decimal comma; numbers need a decimal point ('1.5'): convert "
                         "the file")
        elif other is not None:
            seem = (f"the values seem separated by {_NAMES[other]}, not "
                    f"{_NAMES.get(self.delimiter, 'whitespace')}")
            lib = f"{seem}: give delimiter={other!r}"
            cli = f"{seem}: give --delimiter '{_word(other)}'"
        elif lineno == self.first_line and self.header_forced_off:
            lib = f"line {lineno} looks like a header (column names): drop header='no'"
            cli = f"line {lineno} looks like a header (column names): drop --header no"
        where = f"{self.label} line {lineno}, {self.column(j)}: {what}; "
        raise DataError(where + lib, cli=where + cli)


def _n_lines(block):
    return block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)


def _short(line, n=40):
    return repr(line if len(line) <= n else line[:n - 3] + "...")


def _os_reason(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _pyarrow_csv():
    """``(pyarrow, pyarrow.csv)`` when installed (the ``formats`` extra), else None."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    return pa, pcsv
