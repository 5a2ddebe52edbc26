from app.adapters.speller.text import candidate_words, case_shape, restore_case


def words(text: str) -> list[tuple[int, int, str]]:
    return [(t.start, t.end, t.text) for t in candidate_words(text)]


def test_words_have_their_offsets() -> None:
    assert words("Ths sentense has erors") == [(0, 3, "Ths"), (4, 12, "sentense"), (13, 16, "has"), (17, 22, "erors")]


def test_punctuation_digits_and_whitespace_are_not_words() -> None:
    assert words("  Helo,\tworld!! 42 (teh)\n") == [(2, 6, "Helo"), (8, 13, "world"), (20, 23, "teh")]


def test_chunks_with_digits_underscores_apostrophes_or_non_ascii_pass_through() -> None:
    assert words("3rd snake_case don't café naïve x86 Zürich ok") == [(43, 45, "ok")]


def test_one_letter_and_overlong_words_are_left_alone() -> None:
    assert words("a I " + "x" * 25) == []


def test_mixed_case_words_are_names_and_left_alone() -> None:
    assert words("iPhone McDonald eBay THe") == []


def test_case_shapes() -> None:
    assert [case_shape(w) for w in ("word", "WORD", "Word", "wOrd")] == ["lower", "upper", "title", "mixed"]


def test_case_is_restored() -> None:
    assert restore_case("Ths", "this") == "This"
    assert restore_case("THS", "this") == "THIS"
    assert restore_case("ths", "this") == "this"
