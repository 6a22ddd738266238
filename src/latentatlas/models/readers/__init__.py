"""One reader per checkpoint file format: ``native`` (latentatlas .safetensors / .pt),
``nvidia`` (stylegan2-ada / stylegan3 pickles, and the restricted unpickler every network
pickle goes through), ``tf_pickle`` (TensorFlow-era NVlabs pickles: StyleGAN v1, StyleGAN2,
StyleGAN2-ADA TF), ``r3gan`` (R3GAN snapshots), ``rosinality`` (stylegan2-pytorch .pt),
``rosinality_v1`` (style-based-gan-pytorch .model), ``pgan`` (pytorch_GAN_zoo .pth), ``biggan``
(pytorch-pretrained-biggan folder). Each detects its format from content and hands tensors +
configuration to an architecture module; ``models.registry.load_checkpoint_file`` dispatches
among them. (``models.onnx_export`` writes ONNX; nothing reads it.)"""
