"""Images in and out: synthetic degradations (blur, noise, rain, JPEG) and photo files (bit depth, EXIF, ICC)."""
