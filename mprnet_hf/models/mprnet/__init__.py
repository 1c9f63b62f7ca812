"""MPRNet as a transformers model: configuration, modeling, image processing, pipeline, losses and the tiled
inference the pipeline runs. These files are copied flat into every model folder (see `mprnet_hf.hub.remote_code`),
so they import only each other, relatively, and nothing else from `mprnet_hf`.
"""
