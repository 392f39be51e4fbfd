#ifndef CMOSQUITTO_SHIM_H
#define CMOSQUITTO_SHIM_H
#include <stdbool.h>
#include <mosquitto.h>
#endif
