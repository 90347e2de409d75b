using System;
using System.Collections.Generic;
using System.Diagnostics.CodeAnalysis;

namespace Llama.Compiled;

/// <summary>
/// The key-value metadata of a GGUF file (hyperparameters, tokenizer vocabulary, ...), fully read and
/// validated when the file was opened; it does not reference the file afterwards.
/// </summary>
/// <remarks>
/// Values are the CLR types of their GGUF types: <see cref="byte"/>, <see cref="sbyte"/>, <see cref="ushort"/>,
/// <see cref="short"/>, <see cref="uint"/>, <see cref="int"/>, <see cref="float"/>, <see cref="bool"/>,
/// <see cref="string"/>, <see cref="ulong"/>, <see cref="long"/>, <see cref="double"/>; an array is a CLR array of
/// its element type (<c>string[]</c>, <c>float[]</c>, <c>int[]</c>, ...), and an array of arrays is an
/// <c>object[]</c> of such arrays. Strings are decoded as UTF-8 (invalid sequences become U+FFFD).
/// </remarks>
public sealed class GgufMetadata
{
    private readonly Dictionary<string, object> _values;

    internal GgufMetadata(string source, int version, Dictionary<string, object> values, string[] keys)
    {
        Source = source;
        Version = version;
        _values = values;
        Keys = keys;
    }

    /// <summary>The file the metadata was read from, for messages.</summary>
    public string Source { get; }

    /// <summary>The GGUF version of the file (2 or 3).</summary>
    public int Version { get; }

    /// <summary>Every key, in file order.</summary>
    public IReadOnlyList<string> Keys { get; }

    /// <summary><c>general.architecture</c>, or null if the file has none.</summary>
    public string? Architecture => GetString("general.architecture");

    /// <summary>True if the file has <paramref name="key"/>.</summary>
    public bool ContainsKey(string key) => _values.ContainsKey(key);

    /// <summary>The value of <paramref name="key"/> as described in the remarks of <see cref="GgufMetadata"/>.</summary>
    public bool TryGetValue(string key, [NotNullWhen(true)] out object? value) => _values.TryGetValue(key, out value);

    /// <summary>The string <paramref name="key"/>, or null if absent.</summary>
    /// <exception cref="ModelFormatException">The value is not a string.</exception>
    public string? GetString(string key) => Get(key) switch
    {
        null => null,
        string s => s,
        object other => throw WrongType(key, other, "a string"),
    };

    /// <summary>The integer <paramref name="key"/> (of any GGUF integer type), or null if absent.</summary>
    /// <exception cref="ModelFormatException">The value is not an integer, or a uint64 above <see cref="long.MaxValue"/>.</exception>
    public long? GetInteger(string key)
    {
        object? value = Get(key);
        if (value is null)
            return null;
        if (TryInteger(value, out long result))
            return result;
        throw WrongType(key, value, "an integer");
    }

    /// <summary>The float <paramref name="key"/> (float32 or float64), or null if absent.</summary>
    /// <exception cref="ModelFormatException">The value is not a float.</exception>
    public double? GetFloat(string key) => Get(key) switch
    {
        null => null,
        float f => f,
        double d => d,
        object other => throw WrongType(key, other, "a float"),
    };

    /// <summary>The bool <paramref name="key"/>, or null if absent.</summary>
    /// <exception cref="ModelFormatException">The value is not a bool.</exception>
    public bool? GetBool(string key) => Get(key) switch
    {
        null => null,
        bool b => b,
        object other => throw WrongType(key, other, "a bool"),
    };

    /// <summary>The array of strings <paramref name="key"/>, or null if absent.</summary>
    /// <exception cref="ModelFormatException">The value is not an array of strings.</exception>
    public string[]? GetStringArray(string key) => Get(key) switch
    {
        null => null,
        string[] a => a,
        object other => throw WrongType(key, other, "an array of strings"),
    };

    /// <summary>The array of floats <paramref name="key"/> (float32, or float64 narrowed), or null if absent.</summary>
    /// <exception cref="ModelFormatException">The value is not an array of floats.</exception>
    public float[]? GetFloat32Array(string key) => Get(key) switch
    {
        null => null,
        float[] a => a,
        double[] a => Array.ConvertAll(a, v => (float)v),
        object other => throw WrongType(key, other, "an array of floats"),
    };

    /// <summary>The array of integers <paramref name="key"/> (any integer element type whose values fit in an int), or null if absent.</summary>
    /// <exception cref="ModelFormatException">The value is not an array of integers, or an element does not fit in an int.</exception>
    public int[]? GetInt32Array(string key)
    {
        object? value = Get(key);
        if (value is null)
            return null;
        // Exact types: the runtime lets a uint[] pass as an int[] in type tests.
        Type type = value.GetType();
        if (type == typeof(int[])) return (int[])value;
        if (type == typeof(byte[])) return Narrow(key, (byte[])value, v => v);
        if (type == typeof(sbyte[])) return Narrow(key, (sbyte[])value, v => v);
        if (type == typeof(ushort[])) return Narrow(key, (ushort[])value, v => v);
        if (type == typeof(short[])) return Narrow(key, (short[])value, v => v);
        if (type == typeof(uint[])) return Narrow(key, (uint[])value, v => v);
        if (type == typeof(long[])) return Narrow(key, (long[])value, v => v);
        if (type == typeof(ulong[])) return Narrow(key, (ulong[])value, v => v > long.MaxValue ? long.MaxValue : (long)v);
        throw WrongType(key, value, "an array of integers");
    }

    private int[] Narrow<T>(string key, T[] values, Func<T, long> widen)
    {
        var result = new int[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            long element = widen(values[i]);
            if (element is < int.MinValue or > int.MaxValue)
                throw new ModelFormatException($"{Source}: metadata {key}[{i}] = {element} does not fit in a 32-bit integer");
            result[i] = (int)element;
        }
        return result;
    }

    private object? Get(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return _values.TryGetValue(key, out object? value) ? value : null;
    }

    private static bool TryInteger(object value, out long result)
    {
        switch (value)
        {
            case byte v: result = v; return true;
            case sbyte v: result = v; return true;
            case ushort v: result = v; return true;
            case short v: result = v; return true;
            case uint v: result = v; return true;
            case int v: result = v; return true;
            case long v: result = v; return true;
            case ulong v when v <= long.MaxValue: result = (long)v; return true;
            default: result = 0; return false;
        }
    }

    private ModelFormatException WrongType(string key, object value, string expected) =>
        new($"{Source}: metadata {key} is {TypeName(value)}, expected {expected}");

    internal static string TypeName(object value) => value switch
    {
        byte => "a uint8",
        sbyte => "an int8",
        ushort => "a uint16",
        short => "an int16",
        uint => "a uint32",
        int => "an int32",
        float => "a float32",
        bool => "a bool",
        string => "a string",
        ulong => "a uint64",
        long => "an int64",
        double => "a float64",
        Array => ArrayElementTypeOf(value.GetType()) switch
        {
            0 => "an array of uint8",
            1 => "an array of int8",
            2 => "an array of uint16",
            3 => "an array of int16",
            4 => "an array of uint32",
            5 => "an array of int32",
            6 => "an array of float32",
            7 => "an array of bool",
            8 => "an array of string",
            9 => "an array of arrays",
            10 => "an array of uint64",
            11 => "an array of int64",
            12 => "an array of float64",
            _ => "an array",
        },
        _ => "a value",
    };

    /// <summary>
    /// The GGUF element type of a CLR array, by exact type: the runtime lets an <c>int[]</c> pass as a
    /// <c>uint[]</c> (and <c>sbyte[]</c> as <c>byte[]</c>, ...), so type patterns cannot tell them apart.
    /// </summary>
    internal static uint? ArrayElementTypeOf(Type type) =>
        type == typeof(byte[]) ? 0 : type == typeof(sbyte[]) ? 1 : type == typeof(ushort[]) ? 2 : type == typeof(short[]) ? 3
        : type == typeof(uint[]) ? 4 : type == typeof(int[]) ? 5 : type == typeof(float[]) ? 6 : type == typeof(bool[]) ? 7
        : type == typeof(string[]) ? 8 : type == typeof(object[]) ? 9 : type == typeof(ulong[]) ? 10 : type == typeof(long[]) ? 11
        : type == typeof(double[]) ? 12 : null;
}
