import numpy as np

from app.adapters.speller.trie import ROOT, DictionaryTrie

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyz"]
IDS = {ch: i for i, ch in enumerate(VOCAB) if len(ch) == 1}
EOS = 2


def walk(trie: DictionaryTrie, word: str) -> int:
    nodes = np.array([ROOT], dtype=np.int32)
    for ch in word:
        nodes = trie.step(nodes, np.array([IDS[ch]]))
    return int(nodes[0])


def test_only_dictionary_continuations_are_allowed() -> None:
    trie = DictionaryTrie([(w, 1) for w in ["cat", "car", "cart", "dog"]], IDS, len(VOCAB), EOS)
    allowed_after = lambda prefix: {VOCAB[i] for i in np.flatnonzero(trie.allowed[walk(trie, prefix)])}  # noqa: E731
    assert allowed_after("") == {"c", "d"}
    assert allowed_after("ca") == {"t", "r"}
    assert allowed_after("car") == {"t", "</s>"}  # "car" is a word and a prefix of "cart"
    assert allowed_after("cart") == {"</s>"}


def test_words_outside_the_vocabulary_are_skipped() -> None:
    trie = DictionaryTrie([(w, 1) for w in ["café", "don't", "ok", ""]], IDS, len(VOCAB), EOS)
    assert trie.size == 3  # root, "o", "ok"


def test_step_moves_a_whole_batch_and_eos_stays_put() -> None:
    trie = DictionaryTrie([("ab", 3), ("b", 1)], IDS, len(VOCAB), EOS)
    nodes = trie.step(np.array([ROOT, ROOT]), np.array([IDS["a"], IDS["b"]]))
    after = trie.step(nodes, np.array([IDS["b"], EOS]))
    assert after[1] == nodes[1]
    assert trie.allowed[after, EOS].all()


def test_log_prior_sits_on_word_ends() -> None:
    trie = DictionaryTrie([("ab", 3), ("b", 1)], IDS, len(VOCAB), EOS)
    assert np.isclose(trie.log_prior[walk(trie, "ab")], np.log(3 / 4))
    assert np.isclose(trie.log_prior[walk(trie, "b")], np.log(1 / 4))
    assert trie.log_prior[walk(trie, "a")] == 0


def test_the_best_prior_below_a_prefix_is_that_of_its_most_frequent_word() -> None:
    """What bounds a hypothesis in the beam: no word it can still become has a larger prior."""
    counts = {"car": 5, "cart": 10, "cat": 1, "dog": 3, "do": 1}
    trie = DictionaryTrie(counts.items(), IDS, len(VOCAB), EOS)
    total = sum(counts.values())
    expected = {"": "cart", "c": "cart", "ca": "cart", "car": "cart", "cart": "cart", "cat": "cat", "d": "dog",
                "do": "dog", "dog": "dog"}  # fmt: skip
    for prefix, word in expected.items():
        assert np.isclose(trie.best_log_prior_below[walk(trie, prefix)], np.log(counts[word] / total)), prefix
