"""insid3.export"""
