"""The HTML report's pure parts (the whole report is checked on the 2-worker toy run in test_online)."""


def test_report_labels_keep_both_ends_of_a_long_source_name():
    from lead_ray.report import short_name

    name = "gpteacher/toolformer-dedupe-only-dataset.json"
    short = short_name(name)
    assert len(short) == 40 and short.startswith("gpteacher/") and short.endswith("dataset.json")
    assert short_name("gsm8k/train.jsonl") == "gsm8k/train.jsonl"
