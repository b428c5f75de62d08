"""The exclusion list: parsed, merged and written back under the storage root."""

from __future__ import annotations

from colorization import curation, paths, storage


def test_parse_ignores_blanks_and_comments():
    text = "# flagged in review\n000000000042.jpg\n\n  17  # sepia\n17\n"
    assert curation.parse_exclusions(text) == {"000000000042.jpg", "17"}


def test_add_merges_with_what_is_there_and_sorts(isolated_home):
    assert curation.read_exclusions() == set()
    url = curation.add_exclusions(["b", "a"])
    assert url == storage.join(paths.home(), "curation", "exclude.txt")
    assert curation.add_exclusions(["c", "a", " "]) == url
    assert storage.read_text(url) == "a\nb\nc\n"
    assert curation.read_exclusions() == {"a", "b", "c"}


def test_lists_in_s3(s3_bucket):
    url = storage.join(s3_bucket, "lists/exclude.txt")
    curation.add_exclusions(["x1", "x2"], url)
    curation.add_exclusions(["x3"], url)
    assert curation.read_exclusions(url) == {"x1", "x2", "x3"}
    assert curation.read_exclusions(storage.join(s3_bucket, "none.txt")) == set()
