/* A stand-in for the macOS SDK's TargetConditionals.h, for `make check-targets` only: ring (under
 * rustls) compiles a little C whose base.h includes it to tell macOS from iOS. The objects are
 * never linked; a real macOS build uses the SDK's header. */
#pragma once
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
