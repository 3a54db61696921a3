"""Bad input from people: random documents, mutations of the example, random flags.
Each is either accepted or refused with a clean message; nothing ever raises past that."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cli import main
from exporter.config.load import load_text
from exporter.config.model import Config
from exporter.config.problems import ConfigError

EXAMPLE = yaml.safe_load((Path(__file__).parent.parent / "config.example.yaml").read_text())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["30s", "5m", "${HOME}", "${UNSET_FUZZ_VAR}", "eu-west-1_AbC1", "default"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(
                    [
                        "defaults",
                        "pools",
                        "scrape",
                        "credentials",
                        "discovery",
                        "probe",
                        "id",
                        "region",
                        "timeout",
                        "labels",
                        "page_size",
                        "role_arn",
                        "tags",
                        "default",
                    ]
                ),
                st.text(max_size=8),
                st.integers(),
            ),
            children,
            max_size=5,
        ),
    ),
    max_leaves=25,
)


def outcome_of(text: str) -> Config | ConfigError:
    try:
        return load_text(text)
    except ConfigError as error:
        refused = error
    assert refused.problems
    assert all(isinstance(problem, str) and problem for problem in refused.problems)
    return refused


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_load_or_fail_cleanly(document: object) -> None:
    outcome_of(yaml.safe_dump(document))


@st.composite
def mutated_example(draw: st.DrawFn) -> object:
    document = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        target = document
        path = []
        while isinstance(target, dict | list) and target and draw(st.booleans()):
            key = draw(
                st.sampled_from(
                    sorted(target, key=str)
                    if isinstance(target, dict)
                    else list(range(len(target)))
                )
            )
            path.append(key)
            parent, target = target, target[key]
        replacement = draw(documents)
        if path:
            parent[path[-1]] = replacement
        else:
            document = replacement
    return document


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_example())
def test_mutations_of_the_example_load_or_fail_cleanly(document: object) -> None:
    outcome_of(yaml.safe_dump(document))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_loads_or_fails_cleanly(text: str) -> None:
    outcome_of(text)


flag_values = st.one_of(
    st.text(max_size=12), st.sampled_from(["debug", "json", ":0", "-1", "nan", "1e9", "x:y"])
)
flags = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "--config.file",
                "--web.listen-address",
                "--log.level",
                "--log.format",
                "--web.timeout-offset",
                "--bogus",
                "-x",
            ]
        ),
        flag_values,
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(flags)
def test_random_flags_are_accepted_or_refused_cleanly(argv: list[str]) -> None:
    """With --config.check the process validates and exits; bad flags exit 2 with usage."""
    try:
        code: int | str | None = main([*argv, "--config.check"])
    except SystemExit as exited:
        code = exited.code
    assert code in (0, 1, 2)
