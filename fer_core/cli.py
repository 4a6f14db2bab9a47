"""`python -m fer_core {train,evaluate,robustness,calibrate,ensemble,benchmark,models,predict,default,results}`.

Argument parsing only: each command's work lives in its own module."""
import argparse
import json
import logging
import os
import sys

from .errors import FerError

DATA_HELP = "FER2013 .zip, folder or .csv (default: env FER2013_PATH)"  # every command's --data


def cmd_train(args):
    from .training import train
    train.run(args, sys.argv[1:])


def cmd_evaluate(args):
    from .models.cards import find_card
    from .data.fer2013 import open_dataset
    from .models.evaluate import format_table
    from .models.measure import evaluate_models, side_by_side
    ds = open_dataset(args.data)
    names = args.model or [find_card()["name"]]
    load = _int8_loader if args.backend == "int8" else None  # None: the fp32 weights
    results = evaluate_models(names, ds, args.split, args.tta, args.peer, load)
    if args.json:  # one model: its metrics at the top level; several: under "models"
        head = {"data": ds.path.name, "split": args.split, "tta": args.tta, "backend": args.backend}
        first = next(iter(results))
        body = {"model": first, **results[first]} if len(results) == 1 else {"models": results}
        with open(args.json, "w") as f:
            json.dump({**head, **body}, f, indent=1)
    if args.write_card:
        _write_metrics(names, ds, args.split, args.tta, results, args.backend)
    tta = ("" if args.tta == "none" else f" with {args.tta} TTA") + (", int8" if args.backend == "int8" else "")
    if len(results) == 1:
        name, m = next(iter(results.items()))
        print(format_table(m, f"{name} on {ds.path.name} {args.split}{tta}"))
    else:
        print(side_by_side(results, f"{ds.path.name} {args.split}{tta}"))


def _int8_loader(name):
    """(the shipped model's int8 build, its card): WeightsError naming the file when it has none usable."""
    from .inference import int8
    from .models.cards import find_card
    card = find_card(name)
    return int8.load(card), card


def _write_metrics(names, ds, split, tta, results, backend="torch"):
    """Store each shipped model's metrics on this dataset in its card (metrics[dataset][split(_tta)]), or in its
    int8 block for backend int8."""
    from .models.card_schema import dataset_key
    from .models.cards import find_card, write_card
    from .models.measure import dataset_info
    if tta not in ("none", "flip"):
        raise FerError("cards keep plain and flip-TTA metrics only: use --tta flip or none with --write-card")
    key = dataset_key(ds.path.name)
    for name in names:
        card = find_card(name)
        block = card["int8"] if backend == "int8" else card
        block.setdefault("datasets", {})[key] = dataset_info(ds)
        block.setdefault("metrics", {}).setdefault(key, {})[split + ("_tta" if tta == "flip" else "")] = \
            results[card["name"]]
        if block.get("not_measured", {}).pop(key, None) is not None and not block["not_measured"]:
            del block["not_measured"]
        write_card(card)


def cmd_robustness(args):
    from .models import robustness
    from .models.card_schema import dataset_key
    from .models.cards import find_card, load_model, write_card
    from .data.fer2013 import FER2013, open_dataset
    ds = open_dataset(args.data)
    if not isinstance(ds, FER2013):
        raise FerError(f"robustness reads FER2013's val faces; {ds.path.name} is a photo set")
    val, results = ds.load("val"), {}
    for name in args.model or [find_card()["name"]]:
        model, card = load_model(name)
        results[card["name"]] = robustness.run(model, val)
        if not args.no_card:
            entry = robustness.card_entry(results[card["name"]], dataset_key(ds.path.name), ds.fingerprint())
            write_card({**find_card(card["name"]), "robustness": entry})
    print(robustness.format_results(results))


def cmd_calibrate(args):
    from .models.calibrate import calibrate_card
    from .models.cards import load_model, write_card
    from .data.fer2013 import FER2013, dataset_path
    model, card = load_model(args.model)
    card = calibrate_card(card, model, FER2013(dataset_path(args.data)).load("val"))
    write_card(card)
    c = card["calibration"]
    print(f"{card['name']}: temperature {c['temperature']:.3f}  ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}  "
          f"NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f} (fitted on val, n={c['n']})")


def cmd_ensemble(args):
    from .models import ensemble
    from .models.card_schema import accuracy
    from .data.fer2013 import FER2013, dataset_path
    card = ensemble.build(args.name, args.members, [FER2013(dataset_path(args.data))], sys.argv[1:])
    key = next(iter(card["metrics"]))
    print(f"{card['name']} = {' + '.join(args.members)}: {key} val {accuracy(card, key):.2%}, "
          f"with flip TTA {accuracy(card, key, 'val_tta'):.2%}, temperature {card['temperature']:.3f}")
    if args.default:
        from .models.cards import set_default
        set_default(card["name"])


def cmd_benchmark(args):
    from .inference import benchmark
    from .models.speed import card_machine
    if args.write_card:
        card_machine()  # refused before timing anything while the code paths are limited
    detectors = ("yunet", "haar") if args.detector == "all" else (args.detector,)
    result = benchmark.run(args.model, detectors, args.video, args.image, args.frames, backend=args.backend,
                           peer_tflite=args.peer_tflite)
    if "skipped" in result.get("peer_tflite", {}):
        print(f"warning: peer section skipped: {result['peer_tflite']['skipped']}", file=sys.stderr)
    if args.write_card:
        benchmark.write_card(result)
    print(json.dumps(result, indent=1) if args.json else benchmark.format_result(result))


def cmd_recall(args):
    from .inference import recall
    if not args.photos:
        raise FileNotFoundError("give --photos (a photo set such as wild_photos.zip) or set FER_WILD_PHOTOS")
    detectors = ("yunet", "haar") if args.detector == "all" else (args.detector,)
    result = recall.run(args.photos, detectors, args.faces)
    print(json.dumps(result, indent=1) if args.json else recall.format_result(result))


def cmd_models(args):
    from .models.cards import default_name, read_cards, weights_problem
    from .models.registry import list_models
    from .app.report import ACC, TTA, dataset_column, datasets, results_rows
    cards = read_cards()
    default = default_name()
    rows = []
    for c, r in zip(cards, results_rows(cards, default)):
        problem = weights_problem(c)
        if problem and not c.get("not_shipped"):
            print(f"warning: model {c['name']} cannot load: {problem}", file=sys.stderr)
        rows.append({"name": c["name"], "arch": c["arch"], "default": r["default"], "weights": r["shipped"],
                     "weights_ok": problem is None, "problem": problem, "params": c.get("params"),
                     "metrics": c["metrics"], "table": r})
    rows += [{"name": a, "arch": a, "default": False, "weights": False, "metrics": {}}
             for a in list_models() if a not in {c["name"] for c in cards}]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    accs = [(ACC, "val acc"), (TTA, "val TTA")] + [(dataset_column(d), d[:11]) for d in datasets(cards)[1:]]
    print(f"{'name':<16}{'arch':<16}{'weights':<9}" + "".join(f"{h:>12}" for _, h in accs) + "  default")
    for r in rows:
        cells = [r.get("table", {}).get(key) for key, _ in accs]
        if r["weights"]:
            weights = "yes" if r["weights_ok"] else "BROKEN"
        else:  # a registered architecture without a card, or a card whose file was too big to ship
            weights = "too big" if r.get("problem") else "-"
        print(f"{r['name']:<16}{r['arch']:<16}{weights:<9}" + "".join(f"{f'{v:.2%}' if v else '-':>12}" for v in cells)
              + f"  {'*' if r['default'] else ''}")


def cmd_predict(args):
    from .inference.recognizer import EmotionRecognizer
    rec = EmotionRecognizer(model=args.model, detector=args.detector, backend=args.backend)
    results, failed = [], False
    for image in args.images:
        try:
            results.append({"image": image, "faces": [f.to_dict() for f in rec.predict(image, tta=args.tta)]})
        except FerError as e:
            failed = True
            results.append({"image": image, "error": str(e)})
    print(json.dumps(results, indent=1))
    return 1 if failed else 0


def cmd_quantize(args):
    from .inference import int8
    card = int8.build(args.model, args.data, calibration=args.calibration)
    q = card["int8"]
    for ds, m in q["metrics"].items():
        fp32 = card["metrics"].get(ds, {})
        print(f"{card['name']} int8 on {ds} val: {m['val']['accuracy']:.2%} (fp32 "
              f"{fp32.get('val', {}).get('accuracy', float('nan')):.2%}), flip TTA {m['val_tta']['accuracy']:.2%} "
              f"(fp32 {fp32.get('val_tta', {}).get('accuracy', float('nan')):.2%})")
    files = q.get("file") or f"{len(q['members'])} member files"
    print(f"{files}: {q['size_bytes'] / 2**20:.2f} MiB, {q['cpu_ms_per_face']['batch1']['median']:.3f} ms per "
          f"face at batch 1 on {q['cpu_ms_per_face']['cpu']}")


def cmd_default(args):
    from .models.cards import set_default
    set_default(args.name)
    print(f"{args.name} is now the default model")


def cmd_results(args):
    from .app.report import results_markdown, update_readme
    if args.readme:
        changed = update_readme(args.readme)
        print(f"{args.readme}: results table {'updated' if changed else 'already up to date'}")
    else:
        print(results_markdown())


def build_parser():
    from .models.evaluate import TTA
    from .models.robustness import SEVERITIES
    from .training.train import add_arguments
    p = argparse.ArgumentParser(prog="python -m fer_core", description="FER Studio's engine")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a registered architecture on FER2013")
    add_arguments(t)
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="metrics of shipped models on a split of FER2013 or of a real-photo set")
    e.add_argument("--model", nargs="+", help="shipped model names (default: the default model)")
    e.add_argument("--data", help=DATA_HELP + "; or a real-photo set: a folder or .zip of photos with class "
                                              "folders or a labels.csv (file, emotion, split)")
    e.add_argument("--peer", help="also read the photos with OpenCV zoo's facial expression model (this .onnx)")
    e.add_argument("--write-card", action="store_true", help="store the metrics in each model's card")
    e.add_argument("--split", default="val", choices=["train", "val", "test"])
    e.add_argument("--tta", nargs="?", const="flip", default="none", choices=TTA,
                   help="average over views of each face: flip (the default for a bare --tta) with its mirror, "
                        "tencrop over four corner and a centre crop and their mirrors")
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.add_argument("--backend", default="torch", choices=["torch", "int8"],
                   help="torch: the fp32 weights (the card's figures); int8: the card's int8 build (its int8 block)")
    e.set_defaults(func=cmd_evaluate)
    c = sub.add_parser("calibrate", help="fit a shipped model's temperature on val and store it in its card")
    c.add_argument("--model", help="shipped model name (default: the default model)")
    c.add_argument("--data", help=DATA_HELP)
    c.set_defaults(func=cmd_calibrate)
    n = sub.add_parser("ensemble", help="combine shipped models into one (mean of calibrated probabilities)")
    n.add_argument("--members", nargs="+", required=True, help="names of shipped models")
    n.add_argument("--name", default="ensemble", help="name of the ensemble's card")
    n.add_argument("--data", help=DATA_HELP)
    n.add_argument("--default", action="store_true", help="mark the ensemble as the app's default")
    n.set_defaults(func=cmd_ensemble)
    b = sub.add_parser("benchmark", help="CPU latency per face and per 640x480 frame, load time, peak memory")
    b.add_argument("--model", help="shipped model name (default: the default model)")
    b.add_argument("--detector", default="all", choices=["all", "yunet", "haar"])
    b.add_argument("--video", help="video to take frames from (default: env FER_FACE_CLIP, else a photo)")
    b.add_argument("--image", help="photo to time instead of video frames")
    b.add_argument("--frames", type=int, default=60, help="frames timed per detector")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("--write-card", action="store_true", help="store the per-face latency in the model's card")
    b.add_argument("--backend", default="int8", choices=["int8", "torch"],
                   help="int8: the card's ONNX Runtime file (fp32 PyTorch when it has none); torch: fp32 PyTorch")
    b.add_argument("--peer-tflite", metavar="PATH", default=os.environ.get("FER_TFLITE_PEER") or None,
                   help="also time the fer package's emotion_model_quantized.tflite per face beside ours, with the "
                        "ratio (needs ai-edge-litert; default: env FER_TFLITE_PEER; see docs/speed.md)")
    b.set_defaults(func=cmd_benchmark)
    c = sub.add_parser("recall", help="how often the webcam's and the upload page's detection find real faces of "
                                      "the sizes they promise, by detection input size (docs/speed.md)")
    c.add_argument("--photos", default=os.environ.get("FER_WILD_PHOTOS") or None,
                   help="photo set whose val photos give the faces (default: env FER_WILD_PHOTOS)")
    c.add_argument("--detector", default="all", choices=["all", "yunet", "haar"])
    c.add_argument("--faces", type=int, default=300, help="val photos used (those where YuNet finds a face)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_recall)
    m = sub.add_parser("models", help="registered architectures and shipped models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)
    r = sub.add_parser("predict", help="faces and emotions in image files, as JSON")
    r.add_argument("images", nargs="+")
    r.add_argument("--model", help="shipped model name (default: the default model)")
    r.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"])
    r.add_argument("--tta", nargs="?", const="flip", default="none", choices=TTA,
                   help="average over views of each face, as in evaluate (a bare --tta: flip)")
    r.add_argument("--json", action="store_true", help="JSON output (the only format; kept for scripts)")
    r.add_argument("--backend", default="int8", choices=["int8", "torch"],
                   help="int8: the card's ONNX Runtime file (fp32 PyTorch when it has none); torch: fp32 PyTorch")
    r.set_defaults(func=cmd_predict)
    q = sub.add_parser("quantize", help="write weights/NAME.int8.onnx (static int8, ONNX Runtime) and measure it; "
                                        "for an ensemble, its members' files, then the ensemble")
    q.add_argument("--model", help="shipped model name (default: the default model)")
    q.add_argument("--data", help=DATA_HELP)
    q.add_argument("--calibration", type=int, default=1024, help="training faces that calibrate the int8 ranges")
    q.set_defaults(func=cmd_quantize)
    d = sub.add_parser("default", help="mark a shipped model as the app's default")
    d.add_argument("name")
    d.set_defaults(func=cmd_default)
    o = sub.add_parser("robustness", help=f"FER2013 val through capture corruptions ({', '.join(SEVERITIES)}), "
                                          "three severities each")
    o.add_argument("--model", nargs="+", help="shipped model names (default: the default model)")
    o.add_argument("--data", help=DATA_HELP)
    o.add_argument("--no-card", action="store_true", help="print only; do not store the results in the cards")
    o.set_defaults(func=cmd_robustness)
    s = sub.add_parser("results", help="the results table from the model cards (Markdown)")
    s.add_argument("--readme", help="rewrite the table inside this README instead of printing it")
    s.set_defaults(func=cmd_results)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args) or 0
    except (FerError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
