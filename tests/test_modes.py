"""Tests for kisflow.modes: the five KisFlow function modes."""

from __future__ import annotations

from typing import Any

import pytest

import kisflow as kf
from kisflow.errors import ConfigError
from kisflow.modes import Mode


class TestModeValues:
    """Each mode's value is KisFlow's YAML ``fmode`` word and its letter is the first one."""

    @pytest.mark.parametrize(
        ("mode", "word", "letter"),
        [
            (Mode.VERIFY, "Verify", "V"),
            (Mode.SAVE, "Save", "S"),
            (Mode.LOAD, "Load", "L"),
            (Mode.CALCULATE, "Calculate", "C"),
            (Mode.EXPAND, "Expand", "E"),
        ],
    )
    def test_value_letter_and_str(self, mode: Mode, word: str, letter: str) -> None:
        assert mode.value == word
        assert mode.letter == letter
        assert str(mode) == word
        assert Mode(word) is mode

    def test_exactly_five_modes_in_kisflow_order(self) -> None:
        assert [m.name for m in Mode] == ["VERIFY", "SAVE", "LOAD", "CALCULATE", "EXPAND"]

    def test_letters_are_unique(self) -> None:
        assert len({m.letter for m in Mode}) == 5

    def test_exported_at_top_level(self) -> None:
        assert kf.Mode is Mode


class TestModeParse:
    """``Mode.parse`` takes a Mode, a word in any case, or a letter; rejects the rest."""

    @pytest.mark.parametrize("mode", list(Mode))
    def test_mode_passes_through(self, mode: Mode) -> None:
        assert Mode.parse(mode) is mode

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Verify", Mode.VERIFY),
            ("verify", Mode.VERIFY),
            ("VERIFY", Mode.VERIFY),
            ("sAvE", Mode.SAVE),
            ("load", Mode.LOAD),
            ("CALCULATE", Mode.CALCULATE),
            ("Expand", Mode.EXPAND),
            ("  Calculate \n", Mode.CALCULATE),
        ],
    )
    def test_words_any_case(self, text: str, expected: Mode) -> None:
        assert Mode.parse(text) is expected

    @pytest.mark.parametrize(
        ("letter", "expected"),
        [
            ("V", Mode.VERIFY),
            ("S", Mode.SAVE),
            ("L", Mode.LOAD),
            ("C", Mode.CALCULATE),
            ("E", Mode.EXPAND),
            ("v", Mode.VERIFY),
            ("e", Mode.EXPAND),
        ],
    )
    def test_letters(self, letter: str, expected: Mode) -> None:
        assert Mode.parse(letter) is expected

    @pytest.mark.parametrize(
        "value", ["", "X", "Calc", "Verifyy", "VERIFY_", "CALCULATE ME", None, 1, 3.0, b"Save"]
    )
    def test_bad_values_list_the_five(self, value: Any) -> None:
        with pytest.raises(ConfigError) as info:
            Mode.parse(value)
        message = str(info.value)
        assert repr(value) in message
        for word in ("Verify", "Save", "Load", "Calculate", "Expand"):
            assert word in message
        assert "V, S, L, C, E" in message
        assert info.value.key == "fmode"

    def test_error_is_a_value_error_and_kisflow_error(self) -> None:
        with pytest.raises(ValueError, match="unknown fmode 'Q'"):
            Mode.parse("Q")
        with pytest.raises(kf.KisFlowError):
            Mode.parse("Q")
