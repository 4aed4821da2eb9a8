rule probe_video:
    input:
        video=video_file,
    output:
        "results/probe/{video}.json",
    log:
        "results/logs/probe_video/{video}.log",
    benchmark:
        "results/benchmarks/probe_video/{video}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/probe_video.py"


rule detect_faces:
    input:
        unpack(detector_weights),
        video=video_file,
        probe="results/probe/{video}.json",
    output:
        "results/faces/{video}.parquet",
    log:
        "results/logs/detect_faces/{video}.log",
    benchmark:
        "results/benchmarks/detect_faces/{video}.tsv"
    params:
        detector=config["faces"]["detector"],
        settings={name: section("faces", name) for name in config["faces"]["detector"].split("+")},
        weights={name: RESOURCES[key].to_dict() for name, key in DETECTOR_WEIGHTS.items()},
        batch_size=config["faces"]["batch_size"],
        tracking=section("faces", "tracking"),
        device=config["device"],
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/detect_faces.py"


rule face_landmarks:
    input:
        video=video_file,
        faces="results/faces/{video}.parquet",
        probe="results/probe/{video}.json",
    output:
        "results/landmarks/{video}.parquet",
    log:
        "results/logs/face_landmarks/{video}.log",
    benchmark:
        "results/benchmarks/face_landmarks/{video}.tsv"
    params:
        crop_margin=config["landmarks"]["crop_margin"],
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/face_landmarks.py"


rule voice_activity:
    input:
        unpack(vad_inputs),
        probe="results/probe/{video}.json",
    output:
        "results/vad/{video}.parquet",
    log:
        "results/logs/voice_activity/{video}.log",
    benchmark:
        "results/benchmarks/voice_activity/{video}.tsv"
    params:
        vad=section("vad"),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/voice_activity.py"
