"""insid3.engine"""
