"""What tests, benchmarks and `make chat` share: loopback fakes of outside services, the WeChat
simulator, a scripted clock. Never imported by bot/."""
