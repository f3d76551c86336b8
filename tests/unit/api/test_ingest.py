"""POST /api/v1/readings: every body form, per-line errors, limits, back-pressure, durability."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorstream.api.auth import Auth
from sensorstream.api.ingest import PATH, ingest_path, ingest_router
from sensorstream.readings import ReadingFormat
from sensorstream.sources.ingest_log import HEADER_BYTES, IngestLog, Record
from sensorstream.tokens import Token

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
FORMAT = ReadingFormat(measurements={"temperature": "float"})
NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}


def reading(n: int) -> dict[str, object]:
    return {"device_id": f"d{n % 3}", "ts": 1_717_243_200_000 + n, "temperature": 20.0 + n}


def lines(*items: object) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[IngestLog]:
    with IngestLog(tmp_path / "log") as opened:
        yield opened


def client(
    log: IngestLog, auth: Auth | None = None, host: str = "127.0.0.1", limit: int = 1 << 20
) -> TestClient:
    app = FastAPI()
    app.include_router(
        ingest_router(log, FORMAT, auth or Auth(), max_request_bytes=limit, clock=lambda: NOW)
    )
    return TestClient(app, client=(host, 50000))


def stored(log: IngestLog) -> list[Record]:
    reader = log.reader()
    try:
        return reader.read(1 << 30)
    finally:
        reader.close()


# -- the body forms ------------------------------------------------------------------------


def test_an_ndjson_body_is_stored_byte_for_byte_and_answered_200(log: IngestLog) -> None:
    body = lines(reading(0), reading(1)) + b"\n"  # a blank line counts as a line too

    answer = client(log).post(PATH, content=body, headers=NDJSON)

    assert answer.status_code == 200
    assert answer.json() == {"accepted": 2, "rejected": 0, "request": 0, "errors": []}
    [record] = stored(log)
    assert (record.body, record.lines, record.arrived_at) == (body, 3, NOW)
    second = client(log).post(PATH, content=lines(reading(2)), headers=NDJSON)
    assert second.json()["request"] == 3


def test_a_json_array_is_one_line_per_element(log: IngestLog) -> None:
    body = json.dumps([reading(0), reading(1), reading(2)], indent=2).encode()

    answer = client(log).post(PATH, content=body, headers=JSON)

    assert (answer.status_code, answer.json()["accepted"]) == (200, 3)
    [record] = stored(log)
    assert record.lines == 3
    assert [json.loads(line) for line in record.body.splitlines()] == [
        reading(0),
        reading(1),
        reading(2),
    ]


def test_one_json_object_is_one_line_however_it_is_laid_out(log: IngestLog) -> None:
    answer = client(log).post(PATH, content=json.dumps(reading(0), indent=4), headers=JSON)

    assert (answer.status_code, answer.json()["accepted"]) == (200, 1)
    assert json.loads(stored(log)[0].body) == reading(0)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "text/plain", None],
)
def test_ndjson_is_understood_under_any_content_type(
    log: IngestLog, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    answer = client(log).post(PATH, content=lines(reading(0), reading(1)), headers=headers)

    assert (answer.status_code, answer.json()["accepted"]) == (200, 2)


def test_a_byte_order_mark_is_dropped(log: IngestLog) -> None:
    answer = client(log).post(PATH, content=b"\xef\xbb\xbf" + lines(reading(0)), headers=NDJSON)
    assert answer.status_code == 200
    assert stored(log)[0].body == lines(reading(0))


def test_a_gzipped_body_is_decompressed(log: IngestLog) -> None:
    body = lines(*(reading(n) for n in range(50)))

    answer = client(log).post(
        PATH, content=gzip.compress(body), headers={**NDJSON, "Content-Encoding": "gzip"}
    )

    assert (answer.status_code, answer.json()["accepted"]) == (200, 50)
    assert stored(log)[0].body == body


def test_a_gzip_bomb_is_refused_by_its_decompressed_size(log: IngestLog) -> None:
    bomb = gzip.compress(b" " * (8 << 20))  # 8 MiB of spaces in 8 KiB

    answer = client(log, limit=1 << 20).post(
        PATH, content=bomb, headers={"Content-Encoding": "gzip"}
    )

    assert len(bomb) < 64 * 1024
    assert answer.status_code == 413
    assert "decompresses to more than 1048576 bytes" in answer.json()["detail"]
    assert stored(log) == []


@pytest.mark.parametrize(
    ("encoding", "content", "status", "message"),
    [
        ("gzip", b"not gzip at all", 400, "not valid gzip"),
        ("gzip", gzip.compress(b'{"a": 1}\n')[:-6], 400, "cut short"),
        ("br", b"...", 415, "Content-Encoding 'br' is not understood"),
    ],
)
def test_a_body_that_cannot_be_decompressed_is_refused(
    log: IngestLog, encoding: str, content: bytes, status: int, message: str
) -> None:
    answer = client(log).post(PATH, content=content, headers={"Content-Encoding": encoding})

    assert answer.status_code == status
    assert message in answer.json()["detail"]


# -- per-line errors -----------------------------------------------------------------------


def test_some_bad_lines_answer_207_with_their_line_numbers_and_the_whole_body_is_stored(
    log: IngestLog,
) -> None:
    no_time = {"device_id": "d9", "temperature": 1.5}
    body = lines(reading(0)) + b"{oops\n" + lines(reading(1), no_time) + b"\n" + lines(reading(2))

    answer = client(log).post(PATH, content=body, headers=NDJSON)

    assert answer.status_code == 207
    result = answer.json()
    assert (result["accepted"], result["rejected"], result["request"]) == (3, 2, 0)
    assert [(e["line"], e["reason_code"]) for e in result["errors"]] == [
        (2, "invalid_json"),
        (4, "missing_timestamp"),
    ]
    assert all(e["reason"] for e in result["errors"])
    [record] = stored(log)
    assert (record.body, record.lines) == (body, 6)  # bad lines too: they become dead letters


def test_the_lines_of_an_array_are_its_elements(log: IngestLog) -> None:
    body = json.dumps([reading(0), 42, {"device_id": "x"}, reading(1)]).encode()

    answer = client(log).post(PATH, content=body, headers=JSON)

    assert answer.status_code == 207
    assert [(e["line"], e["reason_code"]) for e in answer.json()["errors"]] == [
        (2, "not_an_object"),
        (3, "missing_timestamp"),
    ]


def test_no_good_line_is_400_with_the_errors_and_nothing_is_stored(log: IngestLog) -> None:
    answer = client(log).post(PATH, content=b"{oops\n[1]\n", headers=NDJSON)

    assert answer.status_code == 400
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (0, 2)
    assert result["detail"] == "none of the 2 lines is a reading: nothing was stored"
    assert [e["line"] for e in result["errors"]] == [1, 2]
    assert stored(log) == []


@pytest.mark.parametrize("body", [b"", b"\n \n", b"[]", b"  [ ]  "])
def test_a_body_without_readings_is_400(log: IngestLog, body: bytes) -> None:
    answer = client(log).post(PATH, content=body, headers=JSON)
    assert answer.status_code == 400
    assert "holds no readings" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"a": 1}, {"a": 2', "not a valid JSON array"),
        (b'[{"a": 1} {"a": 2}]', "expected ',' or ']' at line 1 column 11 (element 2)"),
        (b'[{"a": 1}] {"a": 2}', "more after its JSON array"),
        (b'[{"a": "\xff"}]', "not valid UTF-8"),
    ],
)
def test_an_array_that_is_not_json_is_400_saying_where(
    log: IngestLog, body: bytes, message: str
) -> None:
    answer = client(log).post(PATH, content=body, headers=JSON)

    assert answer.status_code == 400
    assert message in answer.json()["detail"]


def test_the_answer_lists_at_most_1000_errors_but_counts_them_all(log: IngestLog) -> None:
    body = lines(reading(0)) + b"{oops\n" * 1500

    result = client(log, limit=1 << 22).post(PATH, content=body, headers=NDJSON).json()

    assert (result["accepted"], result["rejected"], len(result["errors"])) == (1, 1500, 1000)
    assert result["errors"][0]["line"] == 2


# -- limits, back-pressure, a broken log ---------------------------------------------------


def test_a_body_over_the_limit_is_413(log: IngestLog) -> None:
    body = lines(*(reading(n) for n in range(100)))

    answer = client(log, limit=len(body) - 1).post(PATH, content=body, headers=NDJSON)

    assert answer.status_code == 413
    assert "over the limit" in answer.json()["detail"]


def test_a_streamed_body_over_the_limit_is_413_without_a_content_length(log: IngestLog) -> None:
    def chunks() -> Iterator[bytes]:
        for n in range(100):
            yield lines(reading(n))

    answer = client(log, limit=2_000).post(PATH, content=chunks(), headers=NDJSON)

    assert answer.status_code == 413
    assert stored(log) == []


def test_a_full_log_answers_429_with_retry_after_and_stores_nothing(tmp_path: Path) -> None:
    body = lines(reading(0))
    with IngestLog(tmp_path, max_unconsumed_bytes=2 * (HEADER_BYTES + len(body))) as log:
        ingest = client(log)
        assert ingest.post(PATH, content=body).status_code == 200
        assert ingest.post(PATH, content=body).status_code == 200

        answer = ingest.post(PATH, content=body)

        assert answer.status_code == 429
        assert answer.headers["Retry-After"] == "5"
        assert "not checkpointed yet" in answer.json()["detail"]
        assert log.next_sequence == 2
        log.compact(2)
        assert ingest.post(PATH, content=body).status_code == 200


def test_a_log_that_cannot_be_written_answers_503(log: IngestLog) -> None:
    ingest = client(log)
    log.close()

    answer = ingest.post(PATH, content=lines(reading(0)))

    assert answer.status_code == 503
    assert "closed; the readings were not stored: retry later" in answer.json()["detail"]


# -- auth, and what the app says about itself ----------------------------------------------


def test_posting_needs_the_ingest_scope(log: IngestLog) -> None:
    token = "gateway-token-0123456789"
    auth = Auth([Token.of(token, ["ingest"], "gateway"), Token.of("r" * 20, ["read"], "reader")])
    ingest = client(log, auth, host="192.0.2.1")
    body = lines(reading(0))

    assert ingest.post(PATH, content=body).status_code == 401
    assert (
        ingest.post(PATH, content=body, headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    reader = {"Authorization": f"Bearer {'r' * 20}"}
    assert ingest.post(PATH, content=body, headers=reader).status_code == 403
    gateway = {"Authorization": f"Bearer {token}"}
    assert ingest.post(PATH, content=body, headers=gateway).status_code == 200
    assert client(log, host="192.0.2.1").post(PATH, content=body).status_code == 403
    assert log.next_sequence == 1


def test_the_openapi_schema_documents_the_endpoint(log: IngestLog) -> None:
    app = FastAPI()
    app.include_router(ingest_router(log, FORMAT, Auth()))
    schema = TestClient(app).get("/openapi.json").json()

    post = schema["paths"][PATH]["post"]
    assert {"200", "207", "400", "401", "403", "413", "429", "503"} <= set(post["responses"])
    assert {"application/json", "application/x-ndjson"} <= set(post["requestBody"]["content"])


def test_each_stream_has_its_path_and_readings_keeps_the_short_one() -> None:
    assert ingest_path("readings") == PATH == "/api/v1/readings"
    assert ingest_path("doors") == "/api/v1/streams/doors"
