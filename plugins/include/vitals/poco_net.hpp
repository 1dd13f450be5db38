// For plugins built on Poco::Net: an HTTP client session whose connections are watched by a
// vitals::SocketWatchdog, so the run's deadline bounds the whole exchange (Poco's timeouts bound
// each read only: a server sending one byte at a time keeps a plain session going for ever).
//
//   vitals::SocketWatchdog dog(d);
//   vitals::WatchedSession<Poco::Net::HTTPClientSession> s(dog, vitals::resolve(host, d), port);
//   req.setHost(host, port);  // the session knows the address only
//   ...; if (dog.fired()) -> timed out
#pragma once

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/SocketAddress.h>
#include <vitals/net.hpp>

#include <utility>

namespace vitals {

template <class Session>  // Poco::Net::HTTPClientSession or a subclass
class WatchedSession : public Session {
 public:
  template <class... Args>
  explicit WatchedSession(SocketWatchdog& dog, Args&&... args)
      : Session(std::forward<Args>(args)...), dog_(dog) {}

 protected:
  // Every (re)connection Poco makes is handed to the watchdog.
  void connect(const Poco::Net::SocketAddress& address) override {
    Session::connect(address);
    dog_.watch(this->socket().impl()->sockfd());
  }

 private:
  SocketWatchdog& dog_;
};

}  // namespace vitals
