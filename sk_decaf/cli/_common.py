"""Options shared by the sub-commands."""


def add_backbone_options(parser):
    group = parser.add_argument_group("network")
    group.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help="timm model name, 'alexnet' or 'torchvision:<name>' (default: %(default)s, "
        "ImageNet weights shipped offline)",
    )
    group.add_argument(
        "--weights",
        default=None,
        help="local .pth/.pt/.safetensors state dict, or 'random' (default: the backbone's ImageNet weights)",
    )
    group.add_argument("--pooling", default="avg", help="avg, max, flatten or an int k for a k x k grid")
    group.add_argument("--preprocess", default="model", choices=["model", "decaf"])
    group.add_argument("--device", default="auto")
    group.add_argument("--engine", default="auto", choices=["auto", "torch", "onnxruntime"])
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--n-jobs", type=int, default=None, help="image-decoding worker processes")
    group.add_argument(
        "--cache",
        default=None,
        help="SQLite activation cache file (default: none, or a temporary one where a command needs it)",
    )
    group.add_argument(
        "--weights-seed",
        type=int,
        default=0,
        help="seed of random weights (--weights random), the same for every fit (default: %(default)s)",
    )
    group.add_argument("-v", "--verbose", action="store_true", help="progress bars")


def parse_layer(value):
    """A layer name, or a negative int counting back from the logits."""
    try:
        return int(value)
    except ValueError:
        return value


def parse_pooling(value):
    return int(value) if value.isdigit() else value


def transformer_kwargs(args):
    return dict(
        backbone=args.backbone,
        weights=args.weights,
        pooling=parse_pooling(args.pooling),
        preprocess=args.preprocess,
        device=args.device,
        engine=args.engine,
        batch_size=args.batch_size,
        n_jobs=args.n_jobs,
        verbose=args.verbose,
        random_state=args.weights_seed,
    )
