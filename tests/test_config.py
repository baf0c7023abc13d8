"""The config file: what users write, and the errors they get when it is wrong."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from gsc_pipeline.config import ConfigError, load_config, parse_config, property_key
from gsc_pipeline.reports import Report, ReportDefinitionError
from gsc_pipeline.search_calendar import oldest_available_day, pacific_today


def _cfg(**overrides):
    data = {"start_date": "2026-06-01", "properties": [{"site_url": "sc-domain:example.com"}]}
    data.update(overrides)
    return data


def test_bundled_demo_config_loads():
    config = load_config()
    assert [p.site_url for p in config.properties] == [
        "sc-domain:example.com",
        "https://www.example.org/",
        "sc-domain:shop.example",
        "sc-domain:big.example",
    ]
    assert config.pools == {"default": "gsc_api"}
    assert config.credentials["default"].qpm_budget == pytest.approx(1200 * 0.8)


@pytest.mark.parametrize(
    ("site_url", "suggestion"),
    [
        ("https://example.com", "did you mean 'https://example.com/' (URL-prefix property"),
        ("http://Example.com/blog", "did you mean 'http://example.com/blog/'"),
        ("example.com", "did you mean 'sc-domain:example.com' (domain property) or "
         "'https://example.com/'"),
        ("sc-domain:https://x.com", "did you mean 'sc-domain:x.com' (domain property"),
        ("sc-domain:Shop.Example/", "did you mean 'sc-domain:shop.example'"),
        ("not a url!", "write a domain property as 'sc-domain:example.com' or a URL-prefix "
         "property as 'https://www.example.com/' (with the trailing slash)"),
        ("sc-domain:", "write a domain property as 'sc-domain:example.com'"),
    ],
)  # fmt: skip
def test_bad_site_url_names_the_key_and_suggests_a_valid_form(site_url, suggestion):
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(properties=[{"site_url": site_url}]))
    message = str(err.value)
    assert "properties[0].site_url" in message and suggestion in message
    # The rejected input appears once (what was wrong), never again as the suggested fix.
    assert message.count(repr(site_url)) == 1
    for suggested in re.findall(r"'([^']+)' \(", message):
        assert parse_config(_cfg(properties=[{"site_url": suggested}]))


def test_unknown_key_is_refused():
    with pytest.raises(ConfigError, match=r"properties\[0\]\.reprots"):
        parse_config(_cfg(properties=[{"site_url": "sc-domain:a.com", "reprots": ["page"]}]))


def test_undefined_credential_is_refused():
    with pytest.raises(ConfigError, match="'agency' is not defined under credentials"):
        parse_config(_cfg(properties=[{"site_url": "sc-domain:a.com", "credential": "agency"}]))


def test_secretless_service_account_is_refused():
    with pytest.raises(ConfigError, match="key_env"):
        parse_config(_cfg(credentials={"default": {"kind": "service_account"}}))


def test_colliding_property_names_need_an_explicit_name():
    props = [{"site_url": "sc-domain:example.com"}, {"site_url": "https://example.com/"}]
    with pytest.raises(ConfigError, match="give one of them an explicit `name:`"):
        parse_config(_cfg(properties=props))
    props[1]["name"] = "example_com_https"
    assert [p.key for p in parse_config(_cfg(properties=props)).properties] == [
        "example_com",
        "example_com_https",
    ]


def test_search_type_google_rejects_is_refused_at_load_time():
    prop = {"site_url": "sc-domain:a.com", "reports": ["page_query"], "search_types": ["discover"]}
    with pytest.raises(ConfigError, match="rejects discover grouped by query"):
        parse_config(_cfg(properties=[prop]))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("start_date: 2026-02-30", "start_date: '2026-02-30' is not a calendar day (day value "
         "is outside expected range); write it as YYYY-MM-DD, e.g. 2026-02-28"),
        ("start_date: 2026-13-01", "start_date: '2026-13-01' is not a calendar day"),
        ("start_date: soon", "start_date: 'soon' is not a calendar day"),
        ("start_date: !!timestamp 2026-02-30", "not valid YAML (day is out of range for month)"),
    ],
)  # fmt: skip
def test_an_impossible_date_names_the_file_and_the_key(tmp_path, line, message):
    path = tmp_path / "gsc.yaml"
    path.write_text(f"{line}\nproperties:\n  - site_url: sc-domain:example.com\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


TODAY = dt.date(2026, 12, 1)


def test_start_date_must_lie_in_googles_window_and_not_in_the_future():
    assert parse_config(_cfg(start_date="2025-08-01"), today=TODAY).start_date.isoformat() == (
        "2025-08-01"
    )
    assert parse_config(_cfg(start_date="2026-12-01"), today=TODAY)
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(start_date="2025-07-31"), source="gsc.yaml", today=TODAY)
    assert str(err.value) == (
        "gsc.yaml: start_date: 2025-07-31 is older than Google's 16-month window; the earliest "
        "allowed date today is 2025-08-01 (the window moves forward a day each day, so leave "
        "some margin, or write `start_date: earliest` to follow the window)"
    )
    # `earliest` follows the window: the oldest day Google keeps on the day the config loads.
    assert parse_config(_cfg(start_date="earliest"), today=TODAY).start_date.isoformat() == (
        "2025-08-01"
    )
    later = dt.date(2027, 3, 31)
    assert parse_config(_cfg(start_date="earliest"), today=later).start_date.isoformat() == (
        "2025-11-30"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(start_date="2026-12-02"), source="gsc.yaml", today=TODAY)
    assert str(err.value) == (
        "gsc.yaml: start_date: 2026-12-02 is in the future (today is 2026-12-01, Pacific Time); "
        "set a past day, on or after 2025-08-01"
    )


def test_without_a_given_today_the_window_is_googles_today():
    today = pacific_today()
    assert parse_config(_cfg(start_date=str(today - dt.timedelta(days=30)))).start_date
    with pytest.raises(ConfigError, match="older than Google's 16-month window"):
        parse_config(_cfg(start_date=str(oldest_available_day(today) - dt.timedelta(days=1))))


def test_gsc_today_pins_search_consoles_date_for_the_pipeline_and_the_emulator(monkeypatch):
    from gsc_pipeline.constants import TODAY_ENV
    from gsc_pipeline.emulator.config import TODAY_ENV as EMULATOR_TODAY_ENV
    from gsc_pipeline.emulator.config import EmulatorConfig

    assert EMULATOR_TODAY_ENV == TODAY_ENV

    monkeypatch.setenv(TODAY_ENV, "2027-03-31")
    assert pacific_today() == dt.date(2027, 3, 31)
    assert EmulatorConfig().start_today() == dt.date(2027, 3, 31)
    assert parse_config(_cfg(start_date="earliest")).start_date == dt.date(2025, 11, 30)
    monkeypatch.setenv(TODAY_ENV, "31/03/2027")
    with pytest.raises(ValueError, match=r"GSC_TODAY='31/03/2027' is not a date; write YYYY-MM-DD"):
        pacific_today()
    monkeypatch.delenv(TODAY_ENV)
    pacific = ZoneInfo("America/Los_Angeles")
    before = dt.datetime.now(pacific).date()
    assert before <= pacific_today() <= dt.datetime.now(pacific).date()


def test_the_pipelines_window_is_the_emulators():
    # The pipeline must not import the emulator; the two copies of the rule must agree, on
    # every day including month ends and leap days.
    from gsc_pipeline.emulator.aggregate import window_start

    day = dt.date(2026, 1, 1)
    while day < dt.date(2030, 1, 1):
        assert oldest_available_day(day) == window_start(day), day
        day += dt.timedelta(days=1)
    for today in (dt.date(2027, 6, 30), dt.date(2029, 6, 29), dt.date(2026, 12, 31)):
        oldest = window_start(today)
        assert parse_config(_cfg(start_date=str(oldest)), today=today)
        with pytest.raises(ConfigError, match=f"earliest allowed date today is {oldest}"):
            parse_config(_cfg(start_date=str(oldest - dt.timedelta(days=1))), today=today)


def test_missing_file_says_which_env_var(tmp_path):
    with pytest.raises(ConfigError, match="GSC_PIPELINE_CONFIG"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (Report("x", ("page", "page")), "Duplicate dimensions"),
        (Report("x", ("date",)), "leave 'date' and 'hour' to time_dimension"),
        (Report("x", ("hour",)), "leave 'date' and 'hour' to time_dimension"),
        (Report("x", ("searchAppearance",)), "searchAppearance together with another"),
        (Report("x", ("page",), "byProperty"), "BY_PROPERTY"),
        (Report("x", ("device",), search_types=("discover",)), "discover grouped by device"),
        (Report("x", ("page",), row_limit=25_001), "row_limit"),
        (Report("x", ("colour",)), "unknown"),
        (Report("x", ("page",), time_dimension=None), r"only \[searchAppearance\]"),
    ],
)
def test_report_table_refuses_what_google_rejects(report, message):
    with pytest.raises(ReportDefinitionError, match=message):
        report.validate()


_BRAND = {
    "dimensions": ["query", "country"],
    "search_types": ["web", "image"],
    "aggregation_type": "auto",
    "filters": [{"dimension": "query", "operator": "includingRegex", "expression": "acme|ac me"}],
}


def test_declared_reports_in_the_issues_shape_resolve_per_property():
    config = parse_config(
        _cfg(
            reports={
                "brand_queries_by_country": _BRAND,
                "discover_pages": {"dimensions": ["page"],
                                   "search_types": ["discover", "googleNews"]},
            },
            properties=[
                {"site_url": "sc-domain:example.com",
                 "reports": ["page_query", "page", "site", "brand_queries_by_country",
                             "discover_pages", "search_appearance", "hourly_page"]},
            ],
        )
    )  # fmt: skip
    reports = {r.name: r for r in config.properties[0].report_objects()}
    brand = reports["brand_queries_by_country"]
    assert brand.api_dimensions == ["date", "query", "country"]
    assert brand.request_body(dt.date(2026, 1, 1), "image", "final")["dimensionFilterGroups"] == [
        {"groupType": "and", "filters": [
            {"dimension": "query", "operator": "includingRegex", "expression": "acme|ac me"}]}
    ]  # fmt: skip
    assert reports["discover_pages"].search_types == ("discover", "googleNews")
    assert reports["search_appearance"].api_dimensions == ["searchAppearance"]
    hourly = reports["hourly_page"]
    assert hourly.api_dimensions == ["hour", "page"]
    assert hourly.request_body(dt.date(2026, 1, 1), "web", "final")["dataState"] == "hourly_all"


def test_declared_hourly_and_appearance_reports_follow_their_dimensions():
    config = parse_config(
        _cfg(
            reports={
                "hourly_queries": {"dimensions": ["hour", "query"]},
                "appearances_on_image": {"dimensions": ["searchAppearance"],
                                         "search_types": ["image"]},
            },
            properties=[{"site_url": "sc-domain:a.com",
                         "reports": ["hourly_queries", "appearances_on_image"]}],
        )
    )  # fmt: skip
    hourly, appearance = config.properties[0].report_objects()
    assert (hourly.time_dimension, hourly.dimensions) == ("hour", ("query",))
    assert (appearance.time_dimension, appearance.dimensions) == (None, ("searchAppearance",))


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"dimensions": ["page"], "filters": [{"dimension": "query", "operator": "regex",
                                                "expression": "a"}]},
         "reports.r.filters[0].operator: 'regex' is not one of Google's operators"),
        ({"dimensions": ["query"], "filters": [{"dimension": "query",
                                                 "operator": "includingRegex",
                                                 "expression": "(?=acme)"}]},
         "reports.r.filters[0].expression: '(?=acme)' is not an RE2 regular expression"),
        ({"dimensions": ["query"], "filters": [{"dimension": "date", "expression": "2026"}]},
         "reports.r.filters[0].dimension: Google cannot filter on 'date'"),
        ({"dimensions": ["query"], "filters": [{"dimension": "query", "expression": "x" * 4097}]},
         "reports.r.filters[0].expression: 4097 characters; Google allows at most 4096"),
        ({"dimensions": ["query"], "filters": [{"dimension": "query", "expression": ""}]},
         "reports.r.filters[0].expression: give the value to compare against"),
        ({"dimensions": ["query"], "filters": [{"dimension": "query"}]},
         "reports.r.filters[0].expression: Field required"),
        ({"dimensions": ["query"], "search_types": ["discover"]},
         "reports.r.search_types: Google rejects discover grouped by query"),
        ({"dimensions": ["page"], "search_types": ["googleNews"],
          "filters": [{"dimension": "query", "expression": "a"}]},
         "reports.r.search_types: googleNews has no queries, so a query filter would match"),
        ({"dimensions": ["device"], "search_types": ["discover"]},
         "reports.r.search_types: Google rejects discover grouped by device"),
        ({"dimensions": ["country"], "aggregation_type": "byProperty",
          "filters": [{"dimension": "page", "operator": "contains", "expression": "/blog/"}]},
         "reports.r.aggregation_type: 'BY_PROPERTY' is not valid"),
        ({"dimensions": ["country"], "aggregation_type": "byNewsShowcasePanel"},
         "reports.r.aggregation_type: 'byNewsShowcasePanel' is not one of"),
        ({"dimensions": ["searchAppearance", "page"]},
         "reports.r.dimensions: Google cannot group by searchAppearance together with another"),
        ({"dimensions": ["date", "searchAppearance"]},
         "reports.r.dimensions: Google cannot group by searchAppearance together with another"),
        ({"dimensions": ["date", "hour"]},
         "reports.r.dimensions: Request cannot be grouped by both date and hour"),
        ({"dimensions": ["page", "page"]}, "reports.r.dimensions: Duplicate dimensions"),
        ({"dimensions": ["pages"]}, "reports.r.dimensions: unknown ['pages']"),
        ({"dimensions": ["page"], "search_types": ["webb"]},
         "reports.r.search_types: unknown search type 'webb'"),
        ({"dimensions": ["page"], "search_types": []},
         "reports.r.search_types: give at least one search type"),
        ({"dimensions": ["page"], "row_limit": 0}, "reports.r.row_limit: 0 must be within"),
        ({"dimensions": ["page"], "filter": []}, "reports.r.filter: Extra inputs"),
    ],
)
def test_invalid_declared_reports_are_refused_with_report_key_and_fix(declared, message):
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(reports={"r": declared}))
    assert message in str(err.value)


def test_a_declared_report_may_not_shadow_a_builtin_or_be_misnamed():
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(reports={"page": {"dimensions": ["page", "country"]}}))
    assert "reports.page: 'page' is a built-in report and a declared report may not shadow it" in (
        str(err.value)
    )
    with pytest.raises(ConfigError, match=r"reports\.Brand\.name: must be lowercase"):
        parse_config(_cfg(reports={"Brand": {"dimensions": ["query"]}}))


def test_a_property_naming_an_undeclared_report_is_told_where_to_declare_it():
    with pytest.raises(ConfigError) as err:
        parse_config(_cfg(properties=[{"site_url": "sc-domain:a.com", "reports": ["brand"]}]))
    assert "properties[0].reports: unknown report 'brand'" in str(err.value)
    assert "declare it under the top-level `reports:`" in str(err.value)


def test_property_keys_are_readable():
    assert property_key("sc-domain:shop.example") == "shop_example"
    assert property_key("https://www.example.org/blog/") == "www_example_org_blog"
    assert property_key("https://123.example/") == "p_123_example"
