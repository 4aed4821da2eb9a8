"""The visual front-end: face detection and tracking, landmarks, static backbones and the engines that run them."""
