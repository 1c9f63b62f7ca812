"""Quality evaluation: the model against classical baselines on paired or synthetic photos (PSNR, SSIM)."""
