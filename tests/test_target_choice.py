"""The validation-only choice of a curation (posecurator.pipelines.target_choice)."""

from posecurator.pipelines.target_choice import choose_by_target_validation


def _row(method, reproj, asym, cv=None, setting="gt"):
    row = {"method": method, "setting": setting, "val_target_reproj_mm": reproj, "val_target_bone_asym": asym}
    if cv is not None:
        row["val_target_bone_cv"] = cv
    return row


def test_methods_that_game_the_reprojection_are_vetoed_by_the_depth_figures():
    # the hdm05-to-coco means: self-training reprojects best and breaks the skeleton's symmetry
    summary = [_row("baseline", 57.5, 0.093), _row("adapt", 21.9, 0.174), _row("target_novel33", 54.1, 0.100),
               _row("full_aug", 54.4, 0.096), _row("adapt_target_novel33", 20.4, 0.155)]
    choice = choose_by_target_validation(summary)
    assert choice["method"] == "target_novel33"
    assert set(choice["vetoed"]) == {"adapt", "adapt_target_novel33"}
    assert choice["vetoed"]["adapt"] == "val_target_bone_asym"


def test_bone_variation_vetoes_too_and_the_source_only_row_can_win():
    summary = [_row("baseline", 50.0, 0.10, cv=0.18), _row("near", 40.0, 0.10, cv=0.23), _row("other", 55.0, 0.10, cv=0.17)]
    choice = choose_by_target_validation(summary)
    assert choice["method"] == "baseline" and choice["vetoed"] == {"near": "val_target_bone_cv"}


def test_no_choice_without_figures_or_baseline_and_settings_are_separate():
    assert choose_by_target_validation([]) is None
    assert choose_by_target_validation([{"method": "baseline", "setting": "gt", "mpjpe": 1.0}]) is None
    assert choose_by_target_validation([_row("x", 1.0, 0.1)]) is None
    summary = [_row("baseline", 50.0, 0.1), _row("a", 40.0, 0.1), _row("baseline", 50.0, 0.1, setting="noisy"),
               _row("b", 45.0, 0.1, setting="noisy")]
    assert choose_by_target_validation(summary, setting="noisy")["method"] == "b"
    assert choose_by_target_validation(summary)["method"] == "a"
