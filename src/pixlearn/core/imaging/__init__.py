"""Images in and figures out: the one image decoder, bounded downloads, and PNG figures."""
