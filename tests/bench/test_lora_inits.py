"""The LoRA-inits benchmark's table: means, spreads and paired differences to the default init."""

from bench.lora_inits import table


def test_the_table_pairs_each_init_with_the_default_by_seed():
    rows = [
        {"init": init, "seed": seed, "accuracy": accuracy, "lr_rescues": 0.0, "trainable": 74_498}
        for init, accuracies in {"default": (0.80, 0.82, 0.81), "eva": (0.82, 0.83, 0.83)}.items()
        for seed, accuracy in enumerate(accuracies)
    ]
    lines = table(rows, ["default", "eva"]).splitlines()
    assert lines[2].startswith("| default | 74,498 | 0.8100 | 0.0100 | 3 | — |")
    assert lines[3].startswith("| eva | 74,498 | 0.8267 | 0.0058 | 3 | +0.0167 [")
