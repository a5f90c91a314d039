"""Calibration episodes over the user's examples, as a `SegmentationBenchmark` (evaluation/datasets/base.py),
so insid3-eval's EpisodeRunner scores them one setting at a time exactly as the sweep does all at once.

Episodes: every positive image of every concept is a target once, and so is each of its negatives
up to `negatives_per_concept` (None: as many as the concept has labelled images, so a COCO file's
thousands of images without a category do not swamp it), a seeded pick where there are more. Their order is a
seeded permutation (so the first `--episodes N` are a fair sample); each episode then draws its
`shots` references among the concept's other positives, in episode order from the same stream
(without repeats while there are enough, with them otherwise). The meter's column is the concept.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from insid3.evaluation.calibration.examples import Concept, ExampleSet, Labelled, MaskReader
from insid3.evaluation.episode import Episode, Item, LoadedItem


def item_of(labelled: Labelled) -> Item:
    return Item(image=str(labelled.image), annotation=labelled.annotation, entry=labelled.entry)


def labelled_of(item: Item) -> Labelled:
    return Labelled(Path(item.image), item.annotation, None if item.entry is None else int(item.entry))


# Item.object of a negative target: its ground truth is empty whatever its annotation says (a COCO
# negative's annotation is the COCO file, which holds no annotation of the concept in that image).
NEGATIVE_MARK = -1


def is_negative(episode: Episode) -> bool:
    """Whether the episode's target lacks its concept (an empty ground truth)."""
    return episode.target.object == NEGATIVE_MARK


class CalibrationBenchmark:
    """The episodes of one calibration (an ExampleSet, a shot count, a cap on negatives)."""

    name = "calibration"

    def __init__(self, examples: ExampleSet, shots: int, negatives_per_concept: int | None = None) -> None:
        if shots < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        self.examples = examples
        self.shots = shots
        self.negatives_per_concept = negatives_per_concept
        self.class_ids = tuple(range(len(examples.concepts)))
        self.num_classes = len(examples.concepts)
        self.reader = MaskReader()

    def class_name(self, class_id: int) -> str:
        return self.examples.concept(class_id).name

    def _targets(self, rng: np.random.RandomState) -> list[tuple[int, Item]]:
        targets: list[tuple[int, Item]] = []
        for class_id, concept in enumerate(self.examples.concepts):
            targets += [(class_id, item_of(p)) for p in concept.positives]
            negatives = [item_of(n) for n in concept.negatives]
            negatives = [Item(n.image, n.annotation, n.entry, NEGATIVE_MARK) for n in negatives]
            cap = self.negative_cap(concept)
            if len(negatives) > cap:
                order = rng.permutation(len(negatives))[:cap]
                negatives = [negatives[i] for i in sorted(order)]
            targets += [(class_id, n) for n in negatives]
        return targets

    def negative_cap(self, concept: Concept) -> int:
        cap = self.negatives_per_concept
        return len(concept.positives) if cap is None else cap

    def __len__(self) -> int:
        return sum(len(c.positives) + min(self.negative_cap(c), len(c.negatives)) for c in self.examples.concepts)

    def episodes(self, rng: np.random.RandomState) -> Iterator[Episode]:
        targets = self._targets(rng)
        order = rng.permutation(len(targets))
        for index, position in enumerate(order):
            class_id, target = targets[int(position)]
            others = [item_of(p) for p in self.examples.concept(class_id).positives
                      if (str(p.image), p.entry) != (target.image, target.entry)]
            picks = rng.choice(len(others), self.shots, replace=len(others) < self.shots)
            yield Episode(index=index, class_id=class_id, target=target,
                          references=tuple(others[int(i)] for i in picks))

    def load(self, item: Item, class_id: int) -> LoadedItem:
        labelled = labelled_of(item)
        rgb = self.reader.rgb(labelled)
        if item.object == NEGATIVE_MARK:
            return LoadedItem(rgb=rgb, mask=np.zeros(rgb.shape[:2], dtype=bool))
        mask = self.reader.mask(labelled, rgb.shape[:2], self.examples.concept(class_id).category_id)
        return LoadedItem(rgb=rgb, mask=mask)
