"""The ``streaming`` config section: accepted forms, defaults and the errors a user sees."""

from __future__ import annotations

import pytest

from openhcs_rules.config import validate_screen_config
from openhcs_rules.config.schema import schema_default, schema_node
from openhcs_rules.config.streaming import DEFAULT_PORTS, ViewerTarget, viewer_targets
from openhcs_rules.errors import ConfigError
from openhcs_rules.messaging.addresses import DATA_PORT_OFFSET, DEFAULT_HOST


def test_off_by_default_and_true_means_the_default_port_on_loopback():
    assert viewer_targets(None) == [] and viewer_targets({}) == []
    assert viewer_targets({"napari": False, "fiji": False}) == []
    assert viewer_targets({"napari": True, "fiji": True}) == [
        ViewerTarget(kind="napari", port=5555),
        ViewerTarget(kind="fiji", port=5565),
    ]


def test_a_viewer_can_name_host_port_transport_and_display(tmp_path):
    (target,) = viewer_targets(
        {
            "fiji": {"host": "localhost", "port": 7000, "transport": "inline", "xvfb": True, "start": False},
            "curve_keys_dir": str(tmp_path),
            "ack_timeout_s": 2,
        }
    )
    assert (target.kind, target.host, target.port, target.transport) == ("fiji", "localhost", 7000, "inline")
    assert target.xvfb and not target.start and target.keys_dir == str(tmp_path) and target.ack_timeout_s == 2.0
    assert viewer_targets({"napari": {"enabled": False}}) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"napri": True}, "unknown key 'streaming.napri'. Did you mean 'napari'?"),
        ({"napari": {"colour": "red"}}, "unknown key 'streaming.napari.colour'. Allowed here: enabled, host"),
        ({"napari": "yes"}, "streaming.napari: expected boolean or object"),
        ({"napari": {"port": 65000}}, "streaming.napari.port: 65000 is greater than the maximum of 64535"),
        ({"napari": {"transport": "carrier-pigeon"}}, "not one of: auto, shm, inline"),
        ({"napari": {"host": "0.0.0.0"}}, "set streaming.curve_keys_dir"),
        ({"napari": {"port": 6000}, "fiji": {"port": 6000}}, "share an address"),
    ],
)
def test_mistakes_are_config_errors_that_say_what_to_do(config, message):
    with pytest.raises(ConfigError, match=message):
        viewer_targets(config)


#: streaming sections: what the schema accepts, the parser must accept, and the other way round
SECTIONS = [
    {},
    {"napari": True},
    {"napari": False, "fiji": True, "record": True},
    {"napari": {"port": 1}},
    {"napari": {"port": 64535}},
    {"napari": {"port": 64536}},
    {"napari": {"port": 0}},
    {"napari": {"port": "5555"}},
    {"napari": {"port": 5555.0}},
    {"napari": {"port": True}},
    {"napari": None},
    {"napari": "yes"},
    {"napari": 1},
    {"napari": {}},
    {"napari": {"enabled": False}},
    {"napari": {"enabled": "no"}},
    {"napari": {"xvfb": 1}},
    {"napari": {"start": False, "xvfb": True, "transport": "shm"}},
    {"napari": {"transport": "tcp"}},
    {"napari": {"host": 5}},
    {"napari": {"host": ""}},
    {"napari": {"colour": "red"}},
    {"record": {"port": 7000}},
    {"napri": True},
    {"ack_timeout_s": 0},
    {"ack_timeout_s": -1},
    {"ack_timeout_s": "5"},
    {"connect_timeout_s": 0.5, "start_timeout_s": 30},
    {"curve_keys_dir": None},
    {"curve_keys_dir": 3},
    {"napari": {"host": "localhost"}, "curve_keys_dir": "/k"},
]


def _schema_accepts(section):
    try:
        validate_screen_config({"plates": {"p": {"source": "synthetic"}}, "streaming": section})
    except ConfigError:
        return False
    return True


def _parser_accepts(section):
    try:
        viewer_targets(section)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("section", SECTIONS, ids=[str(s) for s in SECTIONS])
def test_the_schema_and_the_parser_accept_the_same_sections(section):
    assert _schema_accepts(section) == _parser_accepts(section)


@pytest.mark.parametrize(
    "section", [{"napari": {"host": "0.0.0.0"}}, {"napari": {"port": 6000}, "fiji": {"port": 6000}}]
)
def test_what_a_schema_cannot_say_is_the_parsers_only_addition(section):
    assert _schema_accepts(section) and not _parser_accepts(section)


def test_the_parser_takes_its_defaults_and_limits_from_the_schema():
    viewer = schema_node("streaming", "napari")
    assert viewer == schema_node("streaming", "fiji") == schema_node("streaming", "record")
    assert set(schema_node("streaming")["properties"]) >= set(DEFAULT_PORTS)
    assert viewer["properties"]["port"]["maximum"] == 65535 - DATA_PORT_OFFSET
    assert viewer["properties"]["host"]["default"] == DEFAULT_HOST
    (target,) = viewer_targets({"napari": True})
    assert target == ViewerTarget(kind="napari", port=DEFAULT_PORTS["napari"])
    assert target.ack_timeout_s == schema_default("streaming", "ack_timeout_s")
    assert target.transport == viewer["properties"]["transport"]["default"]
