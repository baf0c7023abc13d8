"""Every validation rule answers 400 with Google's message, through the real client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from .client import query

DAY = {"startDate": "2026-08-01", "endDate": "2026-08-01"}


def _error(service: Any, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(HttpError) as caught:
        service.searchanalytics().query(siteUrl="sc-domain:example.com", body=body).execute()
    assert caught.value.resp.status == 400
    return json.loads(caught.value.content)["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"endDate": "2026-08-01"}, "startDate field is required."),
        ({"startDate": "2026-08-01"}, "endDate field is required."),
        ({**DAY, "dimensions": ["page", "page"]}, "Duplicate dimensions are not allowed."),
        (
            {**DAY, "dimensions": ["searchAppearance", "page"]},
            "Cannot group by search appearance dimension together with another dimension.",
        ),
        (
            {**DAY, "dimensions": ["date", "hour"], "dataState": "hourly_all"},
            "Request cannot be grouped by both date and hour",
        ),
        ({**DAY, "dimensions": ["hour"]}, "Grouping by HOUR requires setting dataState=HOURLY_ALL"),
        (
            {**DAY, "dimensions": ["page"], "aggregationType": "byProperty"},
            "'BY_PROPERTY' is not a valid aggregation type in the context of the request.",
        ),
        (
            {**DAY, "aggregationType": "BY_PROPERTY",
             "dimensionFilterGroups": [{"filters": [{"dimension": "page",
                                                     "expression": "https://example.com/"}]}]},
            "'BY_PROPERTY' is not a valid aggregation type in the context of the request.",
        ),
        (
            {**DAY, "type": "discover", "aggregationType": "byProperty"},
            "'BY_PROPERTY' is not a valid aggregation type in the context of the request.",
        ),
        (
            {**DAY, "type": "discover", "dimensions": ["query"]},
            "Request for DISCOVER cannot be grouped by query",
        ),
        (
            {**DAY, "type": "googleNews", "dimensions": ["query"]},
            "Request for GOOGLE_NEWS cannot be grouped by query",
        ),
        (
            {**DAY, "type": "discover", "dimensions": ["device"]},
            "Requests for Discover cannot be grouped by device",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_documented_messages(service: Any, body: dict[str, Any], message: str) -> None:
    error = _error(service, body)
    assert error["message"] == message
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["errors"][0]["message"] == message


def test_by_property_error_names_the_parameter(service: Any) -> None:
    error = _error(service, {**DAY, "dimensions": ["page"], "aggregationType": "byProperty"})
    assert error["errors"][0]["reason"] == "invalidParameter"
    assert error["errors"][0]["location"] == "aggregation_type"


@pytest.mark.parametrize(
    "body",
    [
        {**DAY, "rowLimit": 0},
        {**DAY, "rowLimit": 25001},
        {**DAY, "startRow": -1},
        {**DAY, "type": "podcasts"},
        {**DAY, "dimensions": ["weekday"]},
        {**DAY, "dataState": "fresh"},
        {**DAY, "aggregationType": "byUniverse"},
        {**DAY, "dimensionFilterGroups": [{"groupType": "or", "filters": []}]},
        {**DAY, "dimensionFilterGroups": [{"filters": [{"dimension": "date",
                                                        "expression": "2026-08-01"}]}]},
        {**DAY, "dimensionFilterGroups": [{"filters": [{"dimension": "hour",
                                                        "expression": "1"}]}]},
        {**DAY, "dimensionFilterGroups": [{"filters": [{"dimension": "query",
                                                        "operator": "startsWith",
                                                        "expression": "a"}]}]},
        {**DAY, "dimensionFilterGroups": [{"filters": [{"dimension": "query",
                                                        "operator": "includingRegex",
                                                        "expression": "(unclosed"}]}]},
        {**DAY, "dimensionFilterGroups": [{"filters": [{"dimension": "query",
                                                        "expression": "x" * 4097}]}]},
        {"startDate": "2026-08-02", "endDate": "2026-08-01"},
        {"startDate": "08/01/2026", "endDate": "2026-08-01"},
    ],
    ids=[
        "rowLimit-0", "rowLimit-25001", "startRow-negative", "unknown-type", "unknown-dimension",
        "unknown-dataState", "unknown-aggregation", "groupType-or", "filter-on-date",
        "filter-on-hour", "unknown-operator", "bad-regex", "expression-too-long",
        "start-after-end", "bad-date-format",
    ],
)  # fmt: skip
def test_other_invalid_requests_are_400(service: Any, body: dict[str, Any]) -> None:
    error = _error(service, body)
    assert error["errors"][0]["domain"] == "global"


def test_limits_themselves_are_valid(service: Any) -> None:
    assert "responseAggregationType" in query(service, rowLimit=25000)
    assert "responseAggregationType" in query(service, rowLimit=1)
    long_ok = "x" * 4096
    query(service, dimensionFilterGroups=[{"filters": [{"dimension": "query",
                                                        "expression": long_ok}]}])


@pytest.mark.parametrize(
    "spelling",
    [{"type": "GOOGLE_NEWS"}, {"type": "googlenews"}, {"searchType": "image"},
     {"aggregationType": "BY_PAGE"}, {"dataState": "ALL"}, {"dimensions": ["DATE", "Page"]}],
)  # fmt: skip
def test_enum_spellings_are_accepted(service: Any, spelling: dict[str, Any]) -> None:
    assert "responseAggregationType" in query(service, **spelling)
