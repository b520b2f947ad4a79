"""The exported dataset card (issue 32, item 4): Hub-valid front matter built with huggingface_hub, licenses
stated, no absolute local paths, and the metadata push_to_hub writes kept."""

from __future__ import annotations

import json

import pytest
import yaml
from huggingface_hub import DatasetCard

from synthtune.api.dataset_card import dataset_card, merge_hub_metadata, relative, size_category


@pytest.mark.parametrize("rows, category", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (9999, "1K<n<10K"),
                                            (10_000, "10K<n<100K"), (250_000, "100K<n<1M"),
                                            (12_345_678, "10M<n<100M")])
def test_size_category_is_a_hub_value_at_every_boundary(rows, category):
    assert size_category(rows) == category


def facts(tmp_path, **source):
    return {"method": "synthtune.lightning_modules.DawGenModule", "backbone": "smollm2-135m",
            "source_data": source, "decontamination": None, "mauve": None, "alignment": None,
            "answers_cut_at_cap": None, "rows_per_stage": {"predict": 12000}, "labels_per_stage": {},
            "versions": {"synthtune": "0"}}


def test_the_card_loads_back_with_valid_fields_and_no_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path.parent / "elsewhere" / "secret_dir" / "ref.jsonl"
    inside = tmp_path / "runs" / "x" / "rows.jsonl"
    settings = {"filter": {"input": str(inside)}, "score": {"reference": str(outside)}}
    text = dataset_card("my set", facts(tmp_path, task="sst2"), settings, 12_000, labelled=True,
                        section={"language": "en"}, curation={"kept": 10, "input": str(inside)})
    card = DatasetCard(text)
    data = card.data.to_dict()
    assert data["size_categories"] == ["10K<n<100K"]
    assert data["license"] == "other" and data["language"] == ["en"]
    assert data["source_datasets"] == ["extended|sst2"] and data["task_categories"] == ["text-classification"]
    assert data["pretty_name"] == "my set" and "synthetic" in data["tags"]
    assert str(tmp_path) not in text and "secret_dir" not in text  # relative inside, the file name outside
    assert "runs/x/rows.jsonl" in text and "ref.jsonl" in text
    assert "license: apache-2.0" in text  # the bundled backbone's, stated in the body
    assert "SST: no explicit license" in text  # the bundled task's meta.json
    assert "## Curation report" in text


def test_the_license_the_user_gives_is_declared_and_a_text_set_is_text_generation(tmp_path):
    data_file = tmp_path / "mine.jsonl"
    text = dataset_card("q", facts(tmp_path, path=str(data_file)), {}, 5, labelled=False,
                        section={"license": "cc-by-4.0", "source_license": "cc0-1.0"})
    data = DatasetCard(text).data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["task_categories"] == ["text-generation"]
    assert data["source_datasets"] == ["extended|mine"] and "language" not in data  # nothing says which
    assert "licensed cc0-1.0" in text


def test_relative_walks_nested_settings(tmp_path):
    assert relative({"a": [str(tmp_path / "b" / "c.txt"), "plain", 3]}, tmp_path) == {"a": ["b/c.txt", "plain", 3]}


def test_the_card_that_replaces_push_to_hubs_readme_keeps_its_dataset_info():
    hub = "---\n" + yaml.safe_dump({"dataset_info": {"features": [{"name": "text", "dtype": "string"}],
                                                     "splits": [{"name": "train", "num_examples": 3}]},
                                    "configs": [{"config_name": "default", "data_files": "data/*"}]}) + "---\n"
    ours = dataset_card("q", facts(None, task="sst2"), {}, 3, labelled=True)
    merged = DatasetCard(merge_hub_metadata(ours, hub)).data.to_dict()
    assert merged["dataset_info"]["splits"][0]["num_examples"] == 3
    assert merged["configs"][0]["config_name"] == "default"
    assert merged["size_categories"] == ["n<1K"] and merged["license"] == "other"
    assert "# q" in merge_hub_metadata(ours, hub)


def test_a_backbone_written_as_a_spec_is_named_and_licensed_like_a_name():
    from synthtune.api.dataset_card import backbone_license, config_facts

    as_name = config_facts({"model": {"init_args": {"backbone": "smollm2-135m"}}})
    as_spec = config_facts({"model": {"init_args": {"backbone": {"name": "smollm2-135m", "dtype": "bf16"}}}})
    assert as_name["backbone"] == as_spec["backbone"] == "smollm2-135m"
    assert backbone_license(as_spec["backbone"]) == backbone_license("smollm2-135m") is not None
