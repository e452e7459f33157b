"""Loaders for PDF, DOCX, XLSX, CSV and friends: every fixture is built in code in tmp_path."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import pytest
from openpyxl import Workbook

from retrieval.documents import Document
from retrieval.formats import pdf as pdf_format
from retrieval.formats.cleaning import clean_text
from retrieval.formats.tables import markdown_pipe_tables, split_tables, table_block
from retrieval.loaders import SUPPORTED_SUFFIXES, LoadFailure, html_to_markdown, iter_documents, load_file

MB = 1024 * 1024


def _pdf_bytes(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: one Helvetica text line per entry, top to bottom, per page."""
    n = len(pages)
    font_id, first_page = 3, 4
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: (
            "<< /Type /Pages /Kids ["
            + " ".join(f"{first_page + 2 * i} 0 R" for i in range(n))
            + f"] /Count {n} >>"
        ).encode(),
        font_id: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for i, lines in enumerate(pages):
        page_id, content_id = first_page + 2 * i, first_page + 2 * i + 1
        ops = ["BT", "/F1 12 Tf", "72 740 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops += [f"({escaped}) Tj", "0 -24 Td"]
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {content_id} 0 R >>"
        ).encode()
        objects[content_id] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = out.tell()
        out.write(b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n")
    xref = out.tell()
    size = max(objects) + 1
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for num in range(1, size):
        out.write(b"%010d 00000 n \n" % offsets[num])
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))
    return out.getvalue()


def _only_doc(items: list[Document | LoadFailure]) -> Document:
    assert len(items) == 1 and isinstance(items[0], Document), items
    return items[0]


def _only_failure(items: list[Document | LoadFailure]) -> LoadFailure:
    assert len(items) == 1 and isinstance(items[0], LoadFailure), items
    return items[0]


# --- PDF -------------------------------------------------------------------------------------------


def test_pdf_pages_without_repeated_header_and_page_numbers(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(
        _pdf_bytes(
            [
                ["ACME Corp Confidential", "Quarterly report", "Revenue grew in the north.", "1"],
                ["ACME Corp Confidential", "Costs fell by a tenth in the south.", "2"],
            ]
        )
    )
    doc = _only_doc(load_file(path, doc_id="report.pdf", max_bytes=MB))
    assert "ACME Corp" not in doc.text
    assert "Revenue grew in the north." in doc.text and "Costs fell by a tenth in the south." in doc.text
    assert doc.text.index("Revenue") < doc.text.index("Costs")
    assert not any(line.strip() in {"1", "2"} for line in doc.text.splitlines())
    assert doc.title == "Quarterly report" and doc.metadata == {"format": "text"}


def test_single_page_pdf_keeps_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "memo.pdf"
    path.write_bytes(_pdf_bytes([["ACME Corp Confidential", "One page only."]]))
    doc = _only_doc(load_file(path, doc_id="memo.pdf", max_bytes=MB))
    assert doc.text.splitlines()[0] == "ACME Corp Confidential"


def test_truncated_and_garbage_pdfs_are_failures(tmp_path: Path) -> None:
    data = _pdf_bytes([["Some text here."], ["More text there."]])
    (tmp_path / "cut.pdf").write_bytes(data[: len(data) // 3])
    (tmp_path / "junk.pdf").write_bytes(b"this is not a pdf at all")
    for name in ("cut.pdf", "junk.pdf"):
        failure = _only_failure(load_file(tmp_path / name, doc_id=name, max_bytes=MB))
        assert failure.reason.startswith("not a readable PDF"), failure.reason


def test_encrypted_pdf_is_a_failure(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    src = tmp_path / "plain.pdf"
    src.write_bytes(_pdf_bytes([["Secret plans."]]))
    writer = PdfWriter()
    writer.append(PdfReader(src))
    writer.encrypt(user_password="hunter2", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    failure = _only_failure(load_file(path, doc_id="locked.pdf", max_bytes=MB))
    assert failure.reason.startswith("not a readable PDF") and "password" in failure.reason


def test_scanned_pdf_without_text_is_a_failure(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    path = tmp_path / "scan.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    failure = _only_failure(load_file(path, doc_id="scan.pdf", max_bytes=MB))
    assert "no extractable text" in failure.reason


def test_pdf_page_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_format, "MAX_PAGES", 2)
    path = tmp_path / "long.pdf"
    path.write_bytes(_pdf_bytes([["a page"], ["b page"], ["c page"]]))
    failure = _only_failure(load_file(path, doc_id="long.pdf", max_bytes=MB))
    assert failure.reason == "PDF has 3 pages, over the 2-page limit"


# --- DOCX / XLSX -----------------------------------------------------------------------------------


def test_docx_headings_lists_and_table(tmp_path: Path) -> None:
    d = docx.Document()
    d.add_heading("Pricing guide", level=1)
    d.add_paragraph("All plans are billed monthly.")
    d.add_heading("Plans", level=2)
    d.add_paragraph("Cancel any time", style="List Bullet")
    d.add_paragraph("Table 1: Plans and prices", style="Caption")
    table = d.add_table(rows=3, cols=3)
    for r, values in enumerate([("Plan", "Price", "Seats"), ("Pro", "$20", "5"), ("Team", "$50", "")]):
        for c, value in enumerate(values):
            table.cell(r, c).text = value
    d.add_paragraph("Prices include tax.")
    path = tmp_path / "pricing.docx"
    d.save(str(path))
    doc = _only_doc(load_file(path, doc_id="pricing.docx", max_bytes=MB))
    assert doc.title == "Pricing guide" and doc.metadata == {"format": "markdown"}
    assert doc.text == (
        "# Pricing guide\n\nAll plans are billed monthly.\n\n## Plans\n\n- Cancel any time\n\n"
        "<!-- table: Table 1: Plans and prices -->\n"
        "Plan: Pro; Price: $20; Seats: 5\n"
        "Plan: Team; Price: $50\n\n"
        "Prices include tax."
    )


def test_xlsx_sheets_are_sections_with_tables(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Plans"
    ws.append([None, None])
    ws.append(["Plan", "Price", "Seats"])
    ws.append(["Pro", 20.0, 5])
    ws.append(["Team", 49.5, None])
    other = wb.create_sheet("Regions")
    other.append(["Region", "Manager"])
    other.append(["North", "Ada"])
    path = tmp_path / "prices.xlsx"
    wb.save(str(path))
    doc = _only_doc(load_file(path, doc_id="prices.xlsx", max_bytes=MB))
    assert doc.title == "prices"
    assert doc.text == (
        "## Plans\n\n<!-- table: Plans -->\nPlan: Pro; Price: 20; Seats: 5\nPlan: Team; Price: 49.5\n\n"
        "## Regions\n\n<!-- table: Regions -->\nRegion: North; Manager: Ada"
    )


def _zip_bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w") as member:
            chunk = b"\0" * MB
            for _ in range(50):
                member.write(chunk)


def test_zip_bomb_office_files_are_refused(tmp_path: Path) -> None:
    for name in ("bomb.docx", "bomb.xlsx"):
        path = tmp_path / name
        _zip_bomb(path)
        assert path.stat().st_size < MB
        failure = _only_failure(load_file(path, doc_id=name, max_bytes=10 * MB))
        assert failure.reason.startswith("refused:") and "ZIP bomb" in failure.reason
    # Over the total: 50 MB expanded is more than 20 x a 1 MB limit.
    failure = _only_failure(load_file(tmp_path / "bomb.docx", doc_id="b", max_bytes=MB))
    assert "expands to" in failure.reason


def test_too_many_zip_members_and_not_a_zip(tmp_path: Path) -> None:
    many = tmp_path / "many.xlsx"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(10_001):
            zf.writestr(f"m{i}", b"")
    assert "members" in _only_failure(load_file(many, doc_id="m", max_bytes=10 * MB)).reason
    fake = tmp_path / "fake.docx"
    fake.write_bytes(b"\xd0\xcf\x11\xe0 an OLE (password-protected) file")
    assert "not a valid DOCX" in _only_failure(load_file(fake, doc_id="f", max_bytes=MB)).reason


# --- CSV, text, HTML, Markdown ---------------------------------------------------------------------


def test_csv_with_bom_sniffed_delimiter_and_header(tmp_path: Path) -> None:
    path = tmp_path / "plans.csv"
    path.write_bytes('\ufeffPlan;Price;Notes\nPro;$20;\n\nTeam;$50;"has; semicolon"\n'.encode())
    doc = _only_doc(load_file(path, doc_id="plans.csv", max_bytes=MB))
    assert doc.title == "plans"
    assert doc.text == (
        "<!-- table: plans -->\nPlan: Pro; Price: $20\nPlan: Team; Price: $50; Notes: has; semicolon"
    )
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\n1\t2\n", encoding="utf-8")
    assert _only_doc(load_file(tsv, doc_id="t.tsv", max_bytes=MB)).text.endswith("a: 1; b: 2")


def test_gb18030_text_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "bees.txt"
    path.write_bytes("蜜蜂\n\n蜜蜂是一种会飞行的群居昆虫。".encode("gb18030"))
    doc = _only_doc(load_file(path, doc_id="bees.txt", max_bytes=MB))
    assert doc.title == "蜜蜂" and doc.text == "蜜蜂\n\n蜜蜂是一种会飞行的群居昆虫。"
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    assert _only_failure(load_file(bad, doc_id="bad.txt", max_bytes=MB)).reason == "not UTF-8 text"


def test_cleaning_controls_whitespace_punctuation_and_cjk() -> None:
    raw = "Title\x00\x07\r\n\n\n\n  lots   of\tspace  \n-----\n— 12 —\nPage 3 of 9\n中文 保持\n第 3 页\n"
    assert clean_text(raw) == "Title\n\nlots of space\n中文 保持"
    assert clean_text("```\ncode\n```", markdown=True) == "```\ncode\n```"


def test_html_table_and_markdown_pipe_table(tmp_path: Path) -> None:
    _, md = html_to_markdown(
        "<body><h2>Prices</h2><table><caption>Plans</caption>"
        "<tr><th>Plan</th><th>Price</th></tr><tr><td>Pro</td><td>$20</td></tr></table>"
        "<table><tr><td>x</td><td></td><td>z</td></tr></table></body>"
    )
    assert md == (
        "## Prices\n\n<!-- table: Plans -->\nPlan: Pro; Price: $20\n\n"
        "<!-- table -->\ncolumn 1: x; column 3: z"
    )
    path = tmp_path / "p.md"
    path.write_text("# Doc\n\nIntro.\n\n| Plan | Price |\n|---|:--:|\n| Pro | $20 |\n| Team | |\n\nAfter.\n")
    doc = _only_doc(load_file(path, doc_id="p.md", max_bytes=MB))
    assert doc.text == "# Doc\n\nIntro.\n\n<!-- table -->\nPlan: Pro; Price: $20\nPlan: Team\n\nAfter."


def test_table_blocks_round_trip() -> None:
    block = table_block([["a", "b"], ["1", "2"]], caption="Cap")
    text = f"before\n\n{block}\n\nafter"
    parts = split_tables(text)
    assert [p.strip() for p in parts if isinstance(p, str)] == ["before", "after"]
    table = parts[1]
    assert not isinstance(table, str) and table.caption == "Cap" and table.rows == ["a: 1; b: 2"]
    assert table_block([["only header"]]) == ""
    assert markdown_pipe_tables("no | table here") == "no | table here"


# --- the entry points ------------------------------------------------------------------------------


def test_supported_suffixes_and_unsupported_file(tmp_path: Path) -> None:
    for suffix in (".pdf", ".docx", ".xlsx", ".csv", ".txt", ".md", ".html", ".jsonl"):
        assert suffix in SUPPORTED_SUFFIXES
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG")
    assert "unsupported file type .png" in _only_failure(load_file(path, doc_id="x", max_bytes=MB)).reason


def test_load_file_uses_doc_id_and_source(tmp_path: Path) -> None:
    path = tmp_path / "upload-1234.csv"
    path.write_text("k,v\na,b\n")
    doc = _only_doc(load_file(path, doc_id="folder/prices.csv", max_bytes=MB, source="prices.csv"))
    assert (doc.doc_id, doc.title, doc.source) == ("folder/prices.csv", "prices", "prices.csv")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'{"id": "a", "text": "x"}\n\xff\xfe\n{"id": "b", "text": "y"}\n')
    items = load_file(corpus, doc_id="corpus.jsonl", max_bytes=MB)
    assert [i.doc_id for i in items if isinstance(i, Document)] == ["a", "b"]
    assert [i.reason for i in items if isinstance(i, LoadFailure)] == ["not UTF-8 text"]


def test_folder_walk_picks_up_new_formats(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("k,v\na,b\n")
    (tmp_path / "b.pdf").write_bytes(_pdf_bytes([["Hello PDF."]]))
    (tmp_path / "c.docx").write_bytes(b"not a zip")
    items = list(iter_documents([tmp_path], max_bytes=MB))
    assert [i.doc_id for i in items if isinstance(i, Document)] == ["a.csv", "b.pdf"]
    assert [Path(i.source).name for i in items if isinstance(i, LoadFailure)] == ["c.docx"]
