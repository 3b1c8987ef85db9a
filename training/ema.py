"""Exponential moving average (EMA) of student weights into a teacher.

TIPS keeps an EMA teacher for self-distillation and masked image modeling:
after each optimizer step, `teacher = m * teacher + (1 - m) * student` with
`m` from `schedules.ema_momentum_schedule`. TIPSv2's head-only EMA passes
just the projection heads' variables (the teacher's backbone is then the
student's backbone).

* `ema_update`: in place, on `keras.Variable`s (any backend; inside a JAX
  train step run it in a `keras.StatelessScope` or use `ema_update_values`).
* `ema_update_values`: the same math on plain tensors, returning new values
  (for stateless / functional train steps).
* `copy_weights`: teacher = student, e.g. at initialization.
"""

from keras import backend, ops


def _as_variable_list(variables, arg_name):
    if hasattr(variables, "weights") and not isinstance(
        variables, (list, tuple)
    ):
        return list(variables.weights)
    try:
        return list(variables)
    except TypeError:
        raise TypeError(
            f"`{arg_name}` must be a list of variables or a Keras layer / "
            f"model. Received: {type(variables).__name__}."
        ) from None


def _describe(variable, index):
    name = getattr(variable, "path", None) or getattr(variable, "name", None)
    return f"#{index} ({name})" if name else f"#{index}"


def _check_matching(
    teacher, student, teacher_name, student_name, require_float
):
    if len(teacher) != len(student):
        raise ValueError(
            f"`{teacher_name}` and `{student_name}` must hold the same number "
            f"of variables. Received {len(teacher)} and {len(student)}."
        )
    for index, (t, s) in enumerate(zip(teacher, student)):
        t_shape, s_shape = tuple(t.shape), tuple(s.shape)
        if t_shape != s_shape:
            raise ValueError(
                f"Shape mismatch at variable {index}: teacher "
                f"{_describe(t, index)} has shape {t_shape}, student "
                f"{_describe(s, index)} has shape {s_shape}."
            )
        t_dtype = backend.standardize_dtype(t.dtype)
        s_dtype = backend.standardize_dtype(s.dtype)
        if t_dtype != s_dtype:
            raise TypeError(
                f"Dtype mismatch at variable {index}: teacher "
                f"{_describe(t, index)} is {t_dtype}, student "
                f"{_describe(s, index)} is {s_dtype}."
            )
        if require_float and not backend.is_float_dtype(t_dtype):
            raise TypeError(
                f"EMA needs floating-point variables; teacher variable "
                f"{_describe(t, index)} is {t_dtype}."
            )


def _check_momentum(momentum):
    if isinstance(momentum, (int, float)) and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"`momentum` must be in [0, 1]. Received: {momentum}.")


def _ema(teacher_value, student_value, momentum, dtype):
    momentum = ops.cast(momentum, dtype)
    student_value = ops.stop_gradient(
        ops.convert_to_tensor(student_value, dtype)
    )
    teacher_value = ops.convert_to_tensor(teacher_value, dtype)
    return momentum * teacher_value + (1 - momentum) * student_value


def ema_update_values(teacher_values, student_values, momentum):
    """Returns `[m * t + (1 - m) * s for t, s in zip(teacher, student)]`.

    Pure version of `ema_update` for functional train steps (e.g. JAX
    `stateless_call`): nothing is assigned.

    Args:
        teacher_values: list of teacher tensors / variables.
        student_values: list of student tensors / variables, matching in
            count, shape and dtype.
        momentum: float or scalar tensor in [0, 1].

    Returns:
        list of tensors, the new teacher values.

    Example:
    ```python
    new_teacher = ema_update_values(teacher_values, student_values, 0.994)
    ```
    """
    teacher_values = list(teacher_values)
    student_values = list(student_values)
    _check_matching(
        teacher_values, student_values, "teacher_values", "student_values", True
    )
    _check_momentum(momentum)
    return [
        _ema(t, s, momentum, backend.standardize_dtype(t.dtype))
        for t, s in zip(teacher_values, student_values)
    ]


def ema_update(teacher_variables, student_variables, momentum):
    """In place `t.assign(m * t + (1 - m) * s)` for each teacher variable.

    Args:
        teacher_variables: list of `keras.Variable`s, or a Keras layer /
            model (its `weights` are used, in order).
        student_variables: the same for the student, matching in count,
            shape and dtype (a clear error names the first mismatch).
        momentum: float or scalar tensor in [0, 1], e.g. from
            `ema_momentum_schedule`. 1 keeps the teacher, 0 copies the
            student.

    Example:
    ```python
    ema_update(teacher_head.weights, student_head.weights, momentum=0.994)
    ```
    """
    teacher_variables = _as_variable_list(
        teacher_variables, "teacher_variables"
    )
    student_variables = _as_variable_list(
        student_variables, "student_variables"
    )
    _check_matching(
        teacher_variables,
        student_variables,
        "teacher_variables",
        "student_variables",
        True,
    )
    _check_momentum(momentum)
    for t, s in zip(teacher_variables, student_variables):
        dtype = backend.standardize_dtype(t.dtype)
        t.assign(_ema(t.value, s.value, momentum, dtype))


def copy_weights(teacher, student):
    """Assigns every student variable's value to the matching teacher variable.

    Args:
        teacher: list of `keras.Variable`s, or a Keras layer / model.
        student: the same, matching in count, shape and dtype.

    Example:
    ```python
    copy_weights(teacher_model, student_model)
    ```
    """
    teacher_variables = _as_variable_list(teacher, "teacher")
    student_variables = _as_variable_list(student, "student")
    _check_matching(
        teacher_variables, student_variables, "teacher", "student", False
    )
    for t, s in zip(teacher_variables, student_variables):
        t.assign(ops.stop_gradient(ops.convert_to_tensor(s.value)))
