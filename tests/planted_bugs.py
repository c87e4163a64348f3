"""The bugs `python -m tests.plant_bugs` plants, one at a time: each a small, plausible change that
would change results or lose data, with the fast test files written to catch it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlantedBug:
    name: str  # the behaviour it breaks
    file: str
    original: str  # text that occurs once in `file`
    planted: str  # what replaces it
    tests: list[str]


PLANTED_BUGS = [
    PlantedBug(
        name=("resume guard: the run fingerprint is not compared (another run's folder is resumed)"),
        file="captioner/training/run_state.py",
        original=(
            "if progress.fingerprint == fingerprint and self.checkpoint(progress.epochs_done).is_file():"
        ),
        planted="if self.checkpoint(progress.epochs_done).is_file():",
        tests=["tests/test_run_state.py"],
    ),
    PlantedBug(
        name="dvc.yaml: the train stage does not depend on data/features",
        file="dvc.yaml",
        original=("      - data/embeddings\n      - data/features\n    params: [train]"),
        planted=("      - data/embeddings\n    params: [train]"),
        tests=["tests/test_dvc_yaml.py"],
    ),
    PlantedBug(
        name=("bad-image limit: exactly max_bad_fraction bad images is refused (> became >=)"),
        file="captioner/inputs/features.py",
        original="if len(extraction.bad) > max_bad_fraction * total:",
        planted="if len(extraction.bad) >= max_bad_fraction * total:",
        tests=["tests/test_features.py"],
    ),
    PlantedBug(
        name="zip unpacking: device, pipe and socket members are no longer refused",
        file="captioner/acquire/archives.py",
        original=(
            "            if kind in SPECIAL_ZIP_TYPES:\n"
            '                refuse_kind(self.source, info.filename, "device, pipe or socket")\n'
        ),
        planted="",
        tests=["tests/test_unpacking.py"],
    ),
    PlantedBug(
        name=("CIDEr-D reward: candidate n-gram weights are not clipped to the reference's"),
        file="captioner/model/scoring.py",
        original=("overlap = sum(min(weight, reference.get(ngram, 0.0)) * reference.get(ngram, 0.0)"),
        planted="overlap = sum(weight * reference.get(ngram, 0.0)",
        tests=["tests/test_scoring.py"],
    ),
    PlantedBug(
        name="write_json writes the file in place, not through atomic_path",
        file="captioner/core/files.py",
        original=(
            "    with atomic_path(path) as temporary:\n"
            "        temporary.write_text(json.dumps(data, indent=2,"
            ' ensure_ascii=False) + "\\n", encoding="utf-8")'
        ),
        planted=(
            "    Path(path).parent.mkdir(parents=True, exist_ok=True)\n"
            "    Path(path).write_text(json.dumps(data, indent=2,"
            ' ensure_ascii=False) + "\\n", encoding="utf-8")'
        ),
        tests=["tests/test_faults.py"],
    ),
    PlantedBug(
        name=("run fingerprint: input file bytes are not hashed (only names and settings)"),
        file="captioner/training/run_state.py",
        original=(
            "            digest.update(str(file).encode())\n"
            "            digest.update(bytes.fromhex(sha256_of(file)))"
        ),
        planted="            digest.update(str(file).encode())",
        tests=["tests/test_run_state.py"],
    ),
    PlantedBug(
        name=("beam search: a beam that reached the end token is not kept finished (words follow <end>)"),
        file="captioner/model/decoding.py",
        original="finished = tf.gather(finished, parent, batch_dims=1) | (word == END_ID)",
        planted="finished = word == END_ID",
        tests=["tests/test_decoding.py"],
    ),
    PlantedBug(
        name=("beam search ranking: the length penalty multiplies the log-probability by length ** alpha"),
        file="captioner/model/decoding.py",
        original="ranking = scores / lengths ** length_penalty",
        planted="ranking = scores * lengths ** length_penalty",
        tests=["tests/test_decoding.py"],
    ),
    PlantedBug(
        name=("beam search: every beam starts live, so the beams hold duplicates of one hypothesis"),
        file="captioner/model/decoding.py",
        original=("scores = tf.where(tf.range(beam_size)[None, :] == 0, 0.0, "
                  "tf.fill([images, beam_size], -np.inf))"),
        planted="scores = tf.zeros([images, beam_size])",
        tests=["tests/test_decoding.py"],
    ),
    PlantedBug(
        name=("self-critical advantage: the baseline (other samples' mean reward) is not subtracted"),
        file="captioner/training/self_critical.py",
        original="return (rewards - baseline).reshape(-1)",
        planted="return rewards.reshape(-1)",
        tests=["tests/test_self_critical.py"],
    ),
    PlantedBug(
        name=("self-critical advantage: sign flipped (samples below the baseline are reinforced)"),
        file="captioner/training/self_critical.py",
        original="return (rewards - baseline).reshape(-1)",
        planted="return (baseline - rewards).reshape(-1)",
        tests=["tests/test_self_critical.py"],
    ),
    PlantedBug(
        name=("carved splits: only val images leave train, so carved test images leak into train"),
        file="captioner/captions/collect.py",
        original=('splits["train"] = [image for image in splits["train"] if image not in carved]'),
        planted=('splits["train"] = [image for image in splits["train"] if image not in splits["val"]]'),
        tests=["tests/test_formats.py"],
    ),
    PlantedBug(
        name=("archive member names: only a leading '..' is refused ('top/../../x' escapes)"),
        file="captioner/acquire/archives.py",
        original='    if ".." in parts:',
        planted='    if name.startswith(".."):',
        tests=["tests/test_unpacking.py"],
    ),
    PlantedBug(
        name="caption cleaning keeps digits as words",
        file="captioner/core/text.py",
        original='_NOT_A_LETTER = re.compile(r"[^a-z]+")',
        planted='_NOT_A_LETTER = re.compile(r"[^a-z0-9]+")',
        tests=["tests/test_text.py"],
    ),
    PlantedBug(
        name=("vocabulary: words seen exactly min_count times are left out (>= became >)"),
        file="captioner/core/text.py",
        original="if c >= min_count",
        planted="if c > min_count",
        tests=["tests/test_text.py"],
    ),
    PlantedBug(
        name=("ensemble: members' log-probabilities averaged (geometric mean), not their probabilities"),
        file="captioner/model/network.py",
        original=(
            '    mean = layers.Average(name="mean_next_word")(probabilities)\n'
            "    return keras.Model([image_features, caption], mean,"
            " name=ENSEMBLE_NAME)"
        ),
        planted=(
            '    mean = keras.ops.exp(layers.Average(name="mean_next_word")(\n'
            "        [keras.ops.log(p) for p in probabilities]))\n"
            "    return keras.Model([image_features, caption], mean,"
            " name=ENSEMBLE_NAME)"
        ),
        tests=["tests/test_ensemble.py"],
    ),
    PlantedBug(
        name=("early stopping: a higher val_loss counts as an improvement (every monitor higher-is-better)"),
        file="captioner/training/run_state.py",
        original='return new < best if monitor == "val_loss" else new > best',
        planted="return new > best",
        tests=["tests/test_training_loop.py"],
    ),
    PlantedBug(
        name=("dvc.yaml: extract_features.max_bad_fraction missing from the extract_features params"),
        file="dvc.yaml",
        original=("      - extract_features.batch_size\n      - extract_features.max_bad_fraction\n"
                  "      - extract_features.grid\n      - extract_features.mirrored\n    outs:"),
        planted=("      - extract_features.batch_size\n"
                 "      - extract_features.grid\n      - extract_features.mirrored\n    outs:"),
        tests=["tests/test_dvc_yaml.py"],
    ),
    PlantedBug(
        name=("self-critical loss: the policy-gradient sign flipped (rewarded captions made less likely)"),
        file="captioner/training/self_critical.py",
        original=(
            "loss = -tf.reduce_sum(tf.math.log(tf.maximum(chosen, 1e-30)) * mask * advantage[:, None])"
        ),
        planted=("loss = tf.reduce_sum(tf.math.log(tf.maximum(chosen, 1e-30)) * mask * advantage[:, None])"),
        tests=["tests/test_self_critical.py"],
    ),
    PlantedBug(
        name="caption service: the micro-batcher decodes each request alone",
        file="captioner/inference/batching.py",
        original="while len(batch) < self._max_batch:",
        planted="while len(batch) < 1:",
        tests=["tests/test_service.py"],
    ),
    PlantedBug(
        name="caption service: a streamed upload is not counted against the cap",
        file="captioner/inference/uploads.py",
        original="if received > limit:",
        planted="if received < 0:",
        tests=["tests/test_service.py"],
    ),
    PlantedBug(
        name="caption service: the queue admits one image more than --queue (>= became >)",
        file="captioner/inference/service.py",
        original="if work.admitted >= limits.max_queue:",
        planted="if work.admitted > limits.max_queue:",
        tests=["tests/test_service.py"],
    ),
    PlantedBug(
        name="train stage: its run fingerprint leaves out a setting (a run of other dropout resumes)",
        file="captioner/training/stage.py",
        original="return fingerprint(dataclasses.asdict(config), inputs.files())",
        planted=("return fingerprint({key: value for key, value in dataclasses.asdict(config).items()\n"
                 "                        if key != \"dropout\"}, inputs.files())"),
        tests=["tests/test_train_stage.py"],
    ),
    PlantedBug(
        name="train stage: its run fingerprint leaves out the features (new features resume a run)",
        file="captioner/training/stage.py",
        original="return [self.vocabulary, self.train_split, self.val_split, self.embeddings, self.features]",
        planted="return [self.vocabulary, self.train_split, self.val_split, self.embeddings]",
        tests=["tests/test_train_stage.py"],
    ),
    PlantedBug(
        name="dvc.yaml: evaluate does not depend on data/captions/val.jsonl (the baseline's k)",
        file="dvc.yaml",
        original="      - data/captions/train.jsonl\n      - data/captions/val.jsonl\n",
        planted="      - data/captions/train.jsonl\n",
        tests=["tests/test_dvc_yaml.py"],
    ),
    PlantedBug(
        name="archive member names: `\\` is not a separator ('..\\..\\x.jpg' is skipped, not refused)",
        file="captioner/acquire/archives.py",
        original='parts = PurePosixPath(name.replace("\\\\", "/")).parts',
        planted="parts = PurePosixPath(name).parts",
        tests=["tests/test_unpacking.py"],
    ),
    PlantedBug(
        name="best so far: an improving epoch becomes the best epoch but its score is not kept",
        file="captioner/training/run_state.py",
        original="self.best, self.best_epoch = logs[monitor], self.epochs_done",
        planted="self.best_epoch = self.epochs_done",
        tests=["tests/test_run_state.py", "tests/test_training_loop.py"],
    ),
    PlantedBug(
        name="self-critical phase: it keeps cross-entropy's best score (CIDEr measured against a loss)",
        file="captioner/training/run_state.py",
        original="self.phase, self.best = phase, None",
        planted="self.phase = phase",
        tests=["tests/test_run_state.py", "tests/test_training_loop.py"],
    ),
    PlantedBug(
        name="self-critical sampler: the unknown word can be drawn (banned ids not all zeroed)",
        file="captioner/model/decoding.py",
        original="probabilities[:, list(BANNED_IDS)] = 0.0",
        planted="probabilities[:, list(BANNED_IDS[:2])] = 0.0",
        tests=["tests/test_decoding.py"],
    ),
    PlantedBug(
        name="attention decoding: the step leaves the attended regions out of the merge",
        file="captioner/model/network.py",
        original="        branches.append(attention.attend(sequence, step_regions))\n",
        planted="",
        tests=["tests/test_attention.py", "tests/test_decoding.py"],
    ),
    PlantedBug(
        name="mixed ensemble: merge members read the regions' first row, not their mean",
        file="captioner/model/network.py",
        original='pooled = layers.GlobalAveragePooling1D(name="pool_regions")(image_features)',
        planted="pooled = image_features[:, 0]",
        tests=["tests/test_attention.py"],
    ),
    PlantedBug(
        name="regions: a record reads the grid row of its position, not of its image",
        file="captioner/model/splits.py",
        original="return np.asarray(self.grid[self.rows[index]], dtype=np.float32)",
        planted="return np.asarray(self.grid[index], dtype=np.float32)",
        tests=["tests/test_attention.py"],
    ),
    PlantedBug(
        name="grid: an undecodable image's row is kept (every later image reads its neighbour's)",
        file="captioner/inputs/features.py",
        original="    if good.all():\n        del written",
        planted="    if True:\n        del written",
        tests=["tests/test_features.py"],
    ),
    PlantedBug(
        name="mirrored view: the mirrored captions keep their left and right",
        file="captioner/training/data.py",
        original="word_ids[index[word]] = index[mirrored]",
        planted="word_ids[index[word]] = index[word]",
        tests=["tests/test_mirrored_views.py"],
    ),
    PlantedBug(
        name="mirrored view: it is drawn per caption, so an image is seen both ways in one epoch",
        file="captioner/training/data.py",
        original="enumerate(zip(flipped, captions, strict=True)) for _ in image_captions]\n",
        planted="enumerate(zip(flipped, captions, strict=True)) for _ in image_captions]\n"
                "    rows = [row if index % 2 else row % len(records) for index, row in enumerate(rows)]\n",
        tests=["tests/test_mirrored_views.py"],
    ),
    PlantedBug(
        name="image batches: an image's regions serve the wrong captions (tiled, not each k times)",
        file="captioner/model/network.py",
        original="        return keras.ops.repeat(images, keras.ops.shape(captions)[0] // "
                 "keras.ops.shape(images)[0],\n                                axis=0)",
        planted="        return keras.ops.tile(images, [keras.ops.shape(captions)[0] // "
                "keras.ops.shape(images)[0]]\n                              + [1] * (len(images.shape) - 1))",
        tests=["tests/test_attention.py"],
    ),
    PlantedBug(
        name="image batches: an image's captions are not all its own (the batch's captions rotated)",
        file="captioner/training/data.py",
        original="            yield np.array(images) + len(records) * flipped[images], tokens",
        planted=("            yield np.array(images) + len(records) * flipped[images], "
                 "np.roll(tokens, 1, axis=0)"),
        tests=["tests/test_mirrored_views.py"],
    ),
    PlantedBug(
        name="attention figure: each word shows the weights of the step after the one that chose it",
        file="captioner/model/attention_maps.py",
        original="weights[row, :len(caption)]",
        planted="weights[row, 1:len(caption) + 1]",
        tests=["tests/test_attention.py"],
    ),
    PlantedBug(
        name="decoding: a transparent image is composited at full size, then resized",
        file="captioner/inputs/pixels.py",
        original="        small = rgba.resize(size, Image.Resampling.BILINEAR)\n"
                 "        return Image.alpha_composite(Image.new(\"RGBA\", size, (*BACKGROUND, 255)), "
                 "small).convert(\"RGB\")",
        planted="        whole = Image.alpha_composite(Image.new(\"RGBA\", rgba.size, (*BACKGROUND, 255)), "
                "rgba)\n        return whole.convert(\"RGB\").resize(size, Image.Resampling.BILINEAR)",
        tests=["tests/test_features.py"],
    ),
    PlantedBug(
        name="caption service: decoding runs on four times --decoders threads",
        file="captioner/inference/service.py",
        original="ThreadPoolExecutor(limits.decoders, ",
        planted="ThreadPoolExecutor(4 * limits.decoders, ",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="caption service: a raw body is held in memory whole, never spooled to a file",
        file="captioner/inference/uploads.py",
        original="SpooledTemporaryFile(max_size=SPOOL_BYTES)",
        planted="SpooledTemporaryFile(max_size=max_bytes)",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="caption service: glibc keeps the memory of decoded images (no fixed mmap threshold)",
        file="captioner/inference/service.py",
        original="    libc.mallopt(M_MMAP_THRESHOLD, 1024 * 1024)\n",
        planted="",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="connection deadline: a new connection is not timed until its first request",
        file="captioner/inference/connections.py",
        original=("        super().connection_made(transport)\n"
                  "        self._await_request(self.client_timeout_s)\n"),
        planted="        super().connection_made(transport)\n",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="connection deadline: an answered connection is not timed for its next request",
        file="captioner/inference/connections.py",
        original=("        self._await_request(LINGER_S if self._body_arriving() "
                  "else self.client_timeout_s)\n"),
        planted="        if self._body_arriving():\n            self._await_request(LINGER_S)\n",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="connection deadline: a request refused before its body ended waits the full deadline",
        file="captioner/inference/connections.py",
        original="LINGER_S if self._body_arriving() else self.client_timeout_s",
        planted="self.client_timeout_s",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="caption service: an upload's body is not timed (a stalled body holds its connection)",
        file="captioner/inference/uploads.py",
        original="async with asyncio.timeout(timeout_s):",
        planted="async with asyncio.timeout(None):",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="connection cap: ten times --max-connections are kept open",
        file="captioner/inference/connections.py",
        original="if len(self.connections) > self.max_connections:",
        planted="if len(self.connections) > 10 * self.max_connections:",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="caption service: any Host is answered (DNS rebinding open)",
        file="captioner/inference/service.py",
        original="app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))",
        planted='app.add_middleware(TrustedHostMiddleware, allowed_hosts=["*"])',
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="caption service: only an Origin of 'null' is refused, not other origins",
        file="captioner/inference/guards.py",
        original="and origin is not None and origin.lower() != own:",
        planted='and origin == "null":',
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="caption service: answers carry no Content-Security-Policy",
        file="captioner/inference/guards.py",
        original="                MutableHeaders(scope=message).update(SECURITY_HEADERS)\n",
        planted="                pass\n",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="predict: a path's type is read without following links (broken links look like files)",
        file="captioner/inference/predict.py",
        original="        mode = path.stat().st_mode",
        planted="        mode = path.lstat().st_mode",
        tests=["tests/test_predict.py"],
    ),
    PlantedBug(
        name="export: a dangling link at --out is not seen as an existing entry",
        file="captioner/__main__.py",
        original="    if os.path.lexists(out):",
        planted="    if out.exists():",
        tests=["tests/test_export_paths.py"],
    ),
    PlantedBug(
        name="export: a failed export leaves the --out folder it created",
        file="captioner/__main__.py",
        original="        shutil.rmtree(arguments.out, ignore_errors=True)\n",
        planted="",
        tests=["tests/test_export_paths.py"],
    ),
    PlantedBug(
        name="connection cap: a connection whose body is still arriving cannot be closed for room",
        file="captioner/inference/connections.py",
        original="            self.waiting_since = time.monotonic() if self._body_arriving() else None\n",
        planted="            self.waiting_since = None\n",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="connections: requests sent far ahead of their answers are all read and held",
        file="captioner/inference/connections.py",
        original="len(self.conn.trailing_data[0]) > MAX_PIPELINED_BYTES:",
        planted="len(self.conn.trailing_data[0]) > 1000 * MAX_PIPELINED_BYTES:",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="connections: a refusal of a whole request keeps the connection open",
        file="captioner/inference/connections.py",
        original='message["status"] >= 400 and whole[0]:',
        planted='message["status"] >= 500 and whole[0]:',
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="caption service: an IPv6 loopback Host ([::1]) is refused (brackets not written)",
        file="captioner/inference/guards.py",
        original='f"[{host}]" if ":" in host else host.lower()',
        planted="host.lower()",
        tests=["tests/test_service_abuse.py"],
    ),
    PlantedBug(
        name="caption service: a form's text fields may each hold a megabyte in memory",
        file="captioner/inference/uploads.py",
        original="MAX_FIELD_BYTES = 1024\n",
        planted="MAX_FIELD_BYTES = 1024 * 1024\n",
        tests=["tests/test_service.py"],
    ),
    PlantedBug(
        name="decoding: 32-bit and big-endian greyscale clipped in place (a read-only array)",
        file="captioner/inputs/pixels.py",
        original="        levels = np.clip(levels, 0, SIXTEEN_BIT_TABLE.size - 1)\n",
        planted="        levels = np.clip(levels, 0, SIXTEEN_BIT_TABLE.size - 1, out=levels)\n",
        tests=["tests/test_features.py"],
    ),
    PlantedBug(
        name="pretrained sources: links are not resolved (a link in pretrained/ to a file outside is taken)",
        file="captioner/acquire/pinning.py",
        original="folder, resolved = sources.resolve(), path.resolve()",
        planted="folder, resolved = Path(os.path.abspath(sources)), Path(os.path.abspath(path))",
        tests=["tests/test_pinning.py"],
    ),
    PlantedBug(
        name="model card: the project's evaluate params win over a published model's card",
        file="captioner/__main__.py",
        original="    if card is not None:\n        settings = decoding_of(",
        planted="    if card is not None and evaluate is None:\n        settings = decoding_of(",
        tests=["tests/test_model_card.py"],
    ),
    PlantedBug(
        name="model card: the 'worst captioned' test images are the best captioned",
        file="captioner/publishing/limitations.py",
        original='worst = sorted(rows, key=lambda row: (cider[row["image"]], row["image"]))[:count]',
        planted='worst = sorted(rows, key=lambda row: (-cider[row["image"]], row["image"]))[:count]',
        tests=["tests/test_model_card.py"],
    ),
    PlantedBug(
        name="model card: a card is read beside a model it does not describe (MD5 not compared)",
        file="captioner/inference/model_card.py",
        original="if (name, described_md5) != (model_path.name, md5 or file_md5(model_path)):",
        planted="if name != model_path.name:",
        tests=["tests/test_model_card.py"],
    ),
    PlantedBug(
        name="GET /model: a model without a card answers 200 with null",
        file="captioner/inference/service.py",
        original="        if captioner.card is None:\n",
        planted="        if captioner.card is None and captioner.settings is None:\n",
        tests=["tests/test_service.py"],
    ),
    PlantedBug(
        name="dvc.yaml: publish does not depend on photos/ (a new photo leaves the card stale)",
        file="dvc.yaml",
        original="      - data/pretrained/weights\n      - photos\n",
        planted="      - data/pretrained/weights\n",
        tests=["tests/test_dvc_yaml.py"],
    ),
    PlantedBug(
        name="eval.json: BLEU-1..3 keep names that sort before bleu4 in dvc metrics show",
        file="captioner/reporting/evaluation.py",
        original='LOWER_ORDER_BLEU = {f"bleu{n}": f"bleu_{n}" for n in (1, 2, 3)}',
        planted='LOWER_ORDER_BLEU = {f"bleu{n}": f"bleu{n}" for n in (1, 2, 3)}',
        tests=["tests/test_scoring.py"],
    ),
    PlantedBug(
        name="model card's per-image CIDEr: the scores are paired with the images in reverse order",
        file="captioner/model/scoring.py",
        original="zip(truth, scores, strict=True)",
        planted="zip(reversed(truth), scores, strict=True)",
        tests=["tests/test_scoring.py"],
    ),
]
