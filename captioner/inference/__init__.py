"""Using a trained model: predict on files, a caption service with its web page, a SavedModel export."""
