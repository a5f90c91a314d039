"""insid3.kernels"""
