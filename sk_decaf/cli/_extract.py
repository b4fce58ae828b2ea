"""``sk-decaf extract DIR -o features.npz``: features, paths and labels of an image folder."""

import time

import numpy as np

from ._common import add_backbone_options, parse_layer, transformer_kwargs


def add_extract_parser(sub):
    p = sub.add_parser("extract", help="write the features of a <class>/<image> folder to an .npz file",
                       description="Extract DeCAF features of every image under DIR (layout DIR/<class>/<image>) "
                                   "and write features, paths, target and target_names to an .npz file.")
    p.add_argument("data", metavar="DIR", help="image folder, one sub-folder per class")
    p.add_argument("-o", "--output", required=True, help="output .npz file")
    p.add_argument("--layer", nargs="+", type=parse_layer, default=None,
                   help="layer name(s) or negative int(s); several are concatenated (default: the generic layer)")
    add_backbone_options(p)
    p.set_defaults(func=run_extract)


def run_extract(args):
    from ..datasets import load_image_folder
    from ..transformers import DeCAFTransformer

    data = load_image_folder(args.data)
    layer = args.layer[0] if args.layer and len(args.layer) == 1 else args.layer
    decaf = DeCAFTransformer(layer=layer, cache=args.cache, **transformer_kwargs(args))
    start = time.perf_counter()
    features = decaf.fit_transform(data.paths)
    seconds = time.perf_counter() - start
    np.savez(
        args.output, features=features, paths=np.asarray(data.paths), target=data.target,
        target_names=np.asarray(data.target_names, dtype=str), layers=np.asarray(decaf.layers_),
        feature_names=np.asarray(decaf.get_feature_names_out(), dtype=str),
    )
    print(f"{len(data.paths)} images x {features.shape[1]} features ({', '.join(decaf.layers_)}) of "
          f"{args.backbone} in {seconds:.1f} s ({len(data.paths) / seconds:.1f} img/s, engine "
          f"{decaf.engine_}) -> {args.output}")
    return 0
