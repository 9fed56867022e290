"""Replay the behaviour corpus (tests/corpus.py): same exit codes, stderr, JSON values and text."""

import pytest

import corpus


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    corpus.make_files(d)
    return corpus.run_all(d)


RECORDED = corpus.load()


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_behaviour_unchanged(replay, name):
    diffs = corpus.compare(name, RECORDED[name], replay[name])
    assert not diffs, "\n".join(diffs)


def test_every_command_is_recorded():
    assert sorted(n for n, _, _ in corpus.COMMANDS) == sorted(RECORDED)
