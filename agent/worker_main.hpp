// `vitals worker`: the probe worker process's main (agent/worker_main.cpp).
#pragma once

namespace vitals {

int run_worker(int argc, char** argv);

}  // namespace vitals
