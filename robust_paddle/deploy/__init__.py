"""Deployment: export to Paddle Inference/ONNX/PaddleServing, the predictors, the serving config, the HTTP server."""
