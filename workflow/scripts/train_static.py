"""Fine-tune one named static model (config static_models) on labelled frames of the train videos; keep the epoch
best on validation."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from avaffect.core.checkpoints import write_checkpoint
from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.resources import Resource, verify
from avaffect.core.tables import atomic_write, read_json, read_parquet, write_json
from avaffect.corpus.annotations import align_to_frames, read_annotation
from avaffect.corpus.layout import annotation_path
from avaffect.face.augment import CropAugmentation
from avaffect.face.backbones import Preprocessing, StaticConfig, StaticFER, load_pretrained, read_state_dict
from avaffect.face.tracking import boxes_from_table
from avaffect.media.video import iter_frames
from avaffect.models.static_training import StaticTrainSettings, fine_tune, labelled_crops, labelled_frames

log = job_logger(snakemake.log[0], "train_static")
p = snakemake.params
s = p.static
torch.set_num_threads(snakemake.threads)
inputs = dict(zip(p.static_samples,
                  zip(snakemake.input.videos, snakemake.input.faces, snakemake.input.probes, strict=True), strict=True))
imagenet = (verify(Resource(**p.init_weights), Path(snakemake.input.imagenet),
                   accept_unpinned=p.init_weights["key"] in p.accept_unpinned)
            if hasattr(snakemake.input, "imagenet") else None)
pretrained = Path(snakemake.input.init_checkpoint) if hasattr(snakemake.input, "init_checkpoint") else None
log.info("static model %s: %s backbone, %s head, %s", snakemake.wildcards.static_model, s["backbone"], s["task"],
         f"init from the pretrained FER checkpoint {pretrained}" if pretrained
         else f"ImageNet init from {imagenet}" if imagenet else "random init (imagenet_init: false)")
model = StaticFER(StaticConfig(s["backbone"], s["task"], s["embedding_dim"], s["dropout"]), imagenet)
if pretrained:
    load_pretrained(model, read_state_dict(pretrained, s["init_checkpoint"]["sha256"]), pretrained, log.info)
prep = Preprocessing.of(model)
data = {}
for split, samples in p.samples.items():
    crops, labels = [], []
    for sample in samples:
        video_path, faces_path, probe_path = inputs[sample]
        n_frames = read_json(probe_path)["n_frames"]
        annotation = annotation_path(Path(p.corpus), s["task"], split, sample)
        aligned = align_to_frames(read_annotation(annotation, s["task"]), n_frames)
        faces = read_parquet(faces_path)
        frames = labelled_frames(aligned, s["task"], dict(zip(faces["frame"], faces["has_face"], strict=True)),
                                 s["frames_per_video"])
        boxes = boxes_from_table(faces)
        sample_crops, sample_labels = labelled_crops(iter_frames(Path(video_path), frames.tolist()), boxes, aligned,
                                                     p.crop_margin_px, prep.size)
        crops.append(sample_crops)
        labels.append(sample_labels)
    data[split] = (np.concatenate(crops), np.concatenate(labels))
    log.info("%s: %d labelled face crops from %d samples", split, len(data[split][0]), len(samples))
device = resolve_device(p.device)
settings = StaticTrainSettings(s["epochs"], s["batch_size"], s["learning_rate"], s["weight_decay"], s["seed"],
                               s["loss"], CropAugmentation.from_config(s["augmentation"]))
checkpoint = fine_tune(model, prep, *data["train"], *data["validation"], settings, device, log.info)
write_checkpoint(checkpoint, Path(snakemake.output.checkpoint))
write_json({"static_model": snakemake.wildcards.static_model, "task": s["task"], "backbone": s["backbone"],
            "best_epoch": checkpoint["epoch"], "validation": checkpoint["scores"],
            "imagenet_init": imagenet is not None, "init_checkpoint": str(pretrained) if pretrained else None,
            "device": device,
            "train_frames": len(data["train"][0]), "validation_frames": len(data["validation"][0])},
           Path(snakemake.output.metrics))
atomic_write(Path(snakemake.output.history),
             lambda tmp: pd.DataFrame(checkpoint["history"]).to_csv(tmp, sep="\t", index=False))
