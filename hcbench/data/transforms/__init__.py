"""Transforms shared by the task families."""
