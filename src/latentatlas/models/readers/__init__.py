"""One reader per checkpoint file format: ``native`` (latentatlas .safetensors / .pt),
``nvidia`` (stylegan2-ada / stylegan3 pickles), ``rosinality`` (stylegan2-pytorch .pt),
``pgan`` (pytorch_GAN_zoo .pth), ``biggan`` (pytorch-pretrained-biggan folder). Each detects
its format from content and hands tensors + configuration to an architecture module;
``models.registry.load_checkpoint_file`` dispatches among them."""
