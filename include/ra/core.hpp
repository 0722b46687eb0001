// ra/core.hpp — plain C++ core: element types, shapes, layouts, views, dispatch, errors.
#pragma once

#include <ra/core/any_view.hpp>
#include <ra/core/arena.hpp>
#include <ra/core/config.hpp>
#include <ra/core/dispatch.hpp>
#include <ra/core/dtype.hpp>
#include <ra/core/error.hpp>
#include <ra/core/folded.hpp>
#include <ra/core/int.hpp>
#include <ra/core/layout.hpp>
#include <ra/core/tensor.hpp>
#include <ra/core/view.hpp>
