"""The OpenAPI description and the docs pages, through Django's test client."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

TOPIC_METHODS = {"get", "put", "delete", "post", "patch", "options"}


@pytest.fixture
def client(api_volumes) -> Client:
    return Client()


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_schema_is_valid_openapi_and_generates_without_warnings(capsys):
    validate_schema(SchemaGenerator().get_schema(public=True))
    assert "Warning" not in capsys.readouterr().err


def test_every_api_operation_is_described_once(schema):
    assert set(schema["paths"]) == {"/topics", "/topics/{topic}"}
    assert set(schema["paths"]["/topics"]) == {"get", "options"}
    assert set(schema["paths"]["/topics/{topic}"]) == TOPIC_METHODS


def test_produce_takes_raw_bytes_and_requires_x_sizes(schema):
    produce = schema["paths"]["/topics/{topic}"]["post"]
    body = produce["requestBody"]["content"]
    assert list(body) == ["application/octet-stream", "text/plain"]  # raw bytes first; text to type in Swagger UI
    assert body["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}
    assert body["text/plain"]["schema"] == {"type": "string"}
    sizes = next(p for p in produce["parameters"] if p["name"] == "X-Sizes")
    assert sizes["in"] == "header" and sizes["required"] is True
    assert re.fullmatch(sizes["schema"]["pattern"], "5:0:3") and not re.fullmatch(sizes["schema"]["pattern"], "5:-1")
    assert set(produce["responses"]) == {"204", "400", "412", "413", "500", "503"}


def test_consume_documents_its_headers_and_octet_stream_answer(schema):
    consume = schema["paths"]["/topics/{topic}"]["get"]
    parameters = {(p["in"], p["name"]) for p in consume["parameters"]}
    assert {("header", "X-Id"), ("header", "X-Limit"), ("header", "X-Consumer-Group"), ("query", "id")} <= parameters
    ok = consume["responses"]["200"]
    assert set(ok["content"]) == {"application/octet-stream", "text/plain"}
    assert ok["headers"]["X-Sizes"]["required"] is True
    assert consume["responses"]["204"]["headers"]["X-Errors"]["required"] is True


def test_every_error_answer_has_x_errors_and_a_text_example(schema):
    seen = 0
    for path in schema["paths"].values():
        for method, operation in path.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                seen += 1
                assert response["headers"]["X-Errors"]["required"] is True, (method, status)
                if "content" not in response:  # a create's 412
                    assert "empty body" in response["description"], (method, status)
                    continue
                examples = response["content"]["text/plain"]["examples"].values()
                assert all(example["value"] for example in examples), (method, status)
    assert seen >= 15


def test_wire_error_texts_are_documented(schema):
    texts = json.dumps(schema)
    for text in (
        "topic does not exist", "topic already exists", "invalid header: X-Sizes", "invalid body: invalid json entry",
        "invalid message id", "invalid message limit", "invalid topic", "unable to get consumer offset",
    ):
        assert text in texts


def test_patch_takes_json_and_answers_offsets(schema):
    patch = schema["paths"]["/topics/{topic}"]["patch"]
    assert set(patch["requestBody"]["content"]) == {"application/json"}
    info = schema["components"]["schemas"]["TopicInfo"]
    assert set(info["properties"]) == {"minOffset", "maxOffset"}


def test_swagger_yaml_is_the_same_schema_and_json_on_request(client, schema):
    assert yaml.safe_load(client.get("/docs/swagger.yaml").content) == schema
    response = client.get("/api/schema/", headers={"Accept": "application/json"})
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content) == schema
    assert client.get("/api/schema/", headers={"Accept": "image/png"}).status_code == 200


def test_docs_index_links_both_pages(client):
    for url in ("/docs/", "/docs"):
        page = client.get(url).content.decode()
        assert 'href="/docs/swagger"' in page and 'href="/docs/redocs"' in page


@pytest.mark.parametrize("url", ["/docs/swagger", "/docs/redocs"])
def test_doc_pages_load_only_assets_of_this_server(client, url):
    response = client.get(url)
    assert response["Content-Security-Policy"] == "default-src 'self' 'unsafe-inline' data: blob:"
    page = response.content.decode()
    assert "googleapis" not in page and "cdn" not in page.lower()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(asset.startswith("/") for asset in assets), assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        if hasattr(response, "streaming_content"):
            assert b"".join(response.streaming_content)
            response.close()


@pytest.mark.parametrize("url", ["/api/schema/", "/docs/swagger.yaml", "/docs/swagger", "/docs/redocs", "/docs/"])
def test_no_docs_turns_every_docs_url_off(client, settings, url):
    settings.HARAQA_DOCS = False
    assert client.get(url).status_code == 404
