"""Downstream evaluation: feature extraction, linear SVM, fine-tuning, few-shot, reports."""
