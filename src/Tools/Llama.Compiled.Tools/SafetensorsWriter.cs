using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Llama.Compiled.Tools;

/// <summary>
/// Writes safetensors files, streaming: tensors are declared first (<see cref="AddTensor"/>, dtype <c>F32</c>,
/// <c>F16</c> or <c>BF16</c>), then their data is written in declaration order
/// (<see cref="WriteTensorData"/>), converted from F32 on the way; only one tensor is in memory at a time.
/// The JSON header is padded with spaces to a multiple of 8 bytes, as the reference implementation does.
/// </summary>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly List<KeyValuePair<string, string>> _metadata = [];
    private readonly List<(string Name, string DType, long[] Shape, long Begin, long End)> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private long _dataSize;
    private int _nextTensor;
    private bool _headerWritten;
    private bool _disposed;

    /// <summary>Creates (or overwrites) the file at <paramref name="path"/>.</summary>
    public SafetensorsWriter(string path)
        : this(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16), leaveOpen: false)
    {
    }

    /// <summary>Writes to <paramref name="stream"/> (need not be seekable).</summary>
    public SafetensorsWriter(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _leaveOpen = leaveOpen;
    }

    /// <summary>Adds a <c>__metadata__</c> entry (for example <c>"format": "pt"</c>).</summary>
    public void AddMetadata(string key, string value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        ThrowIfHeaderWritten();
        foreach (KeyValuePair<string, string> entry in _metadata)
        {
            if (entry.Key == key)
                throw new ArgumentException($"metadata {key} was already added", nameof(key));
        }
        _metadata.Add(new(key, value));
    }

    /// <summary>Declares a tensor of <paramref name="shape"/> (outermost first) stored as <paramref name="dtype"/>: <c>F32</c>, <c>F16</c> or <c>BF16</c>.</summary>
    /// <exception cref="ArgumentException">A repeated or reserved name, an unsupported dtype, or a negative or too large shape.</exception>
    public void AddTensor(string name, string dtype, ReadOnlySpan<long> shape)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ThrowIfHeaderWritten();
        if (name == "__metadata__")
            throw new ArgumentException("__metadata__ is reserved", nameof(name));
        int elementSize = dtype switch
        {
            "F32" => 4,
            "F16" or "BF16" => 2,
            _ => throw new ArgumentException($"dtype {dtype} is not supported; use F32, F16 or BF16", nameof(dtype)),
        };
        long count = 1;
        foreach (long dim in shape)
        {
            if (dim < 0)
                throw new ArgumentException("dimensions must not be negative", nameof(shape));
            count = checked(count * dim);
        }
        if (count > int.MaxValue)
            throw new ArgumentException($"tensor {name} has {count} elements; at most {int.MaxValue} per tensor can be written", nameof(shape));
        if (!_names.Add(name))
            throw new ArgumentException($"tensor {name} was already added", nameof(name));
        long bytes = count * elementSize;
        _tensors.Add((name, dtype, shape.ToArray(), _dataSize, _dataSize + bytes));
        _dataSize += bytes;
    }

    /// <summary>
    /// Writes the data of the next declared tensor, <paramref name="name"/>: <paramref name="values"/> row-major,
    /// converted to its dtype (round to nearest even). The first call writes the header.
    /// </summary>
    /// <exception cref="InvalidOperationException"><paramref name="name"/> is not the next declared tensor.</exception>
    /// <exception cref="ArgumentException">The number of values differs from the tensor's element count.</exception>
    public void WriteTensorData(string name, ReadOnlySpan<float> values)
    {
        ArgumentNullException.ThrowIfNull(name);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_nextTensor >= _tensors.Count)
            throw new InvalidOperationException($"tensor {name} was not declared with AddTensor, or its data was already written");
        (string next, string dtype, _, long begin, long end) = _tensors[_nextTensor];
        if (next != name)
            throw new InvalidOperationException($"the next tensor to write is {next}, not {name}: data must be written in the order the tensors were added");
        int elementSize = dtype == "F32" ? 4 : 2;
        if (values.Length * (long)elementSize != end - begin)
            throw new ArgumentException($"tensor {name} has {(end - begin) / elementSize} elements; {values.Length} values were given", nameof(values));
        WriteHeaderOnce();

        if (dtype == "F32")
        {
            _stream.Write(MemoryMarshal.AsBytes(values));
        }
        else
        {
            const int Chunk = 1 << 15;
            ushort[] buffer = ArrayPool<ushort>.Shared.Rent(Math.Min(Chunk, Math.Max(1, values.Length)));
            try
            {
                for (int start = 0; start < values.Length; start += Chunk)
                {
                    ReadOnlySpan<float> chunk = values.Slice(start, Math.Min(Chunk, values.Length - start));
                    Span<ushort> encoded = buffer.AsSpan(0, chunk.Length);
                    if (dtype == "F16")
                        TensorPrimitives.ConvertToHalf(chunk, MemoryMarshal.Cast<ushort, Half>(encoded));
                    else
                    {
                        for (int i = 0; i < chunk.Length; i++)
                            encoded[i] = GgufWriter.ToBFloat16(chunk[i]);
                    }
                    _stream.Write(MemoryMarshal.AsBytes(encoded));
                }
            }
            finally
            {
                ArrayPool<ushort>.Shared.Return(buffer);
            }
        }
        _nextTensor++;
    }

    /// <summary>Completes the file: writes the header if no tensor was written and flushes.</summary>
    /// <exception cref="InvalidOperationException">A declared tensor's data was not written.</exception>
    public void Finish()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_nextTensor != _tensors.Count)
            throw new InvalidOperationException($"tensor {_tensors[_nextTensor].Name} (and {_tensors.Count - _nextTensor - 1} more) were declared but their data was not written");
        WriteHeaderOnce();
        _stream.Flush();
    }

    /// <summary>Closes the stream (unless left open). Without <see cref="Finish"/> the file is incomplete.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (!_leaveOpen)
            _stream.Dispose();
    }

    private void ThrowIfHeaderWritten()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_headerWritten)
            throw new InvalidOperationException("metadata and tensors must be added before the first tensor data is written");
    }

    private void WriteHeaderOnce()
    {
        if (_headerWritten)
            return;
        _headerWritten = true;
        var json = new MemoryStream();
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            if (_metadata.Count > 0)
            {
                writer.WriteStartObject("__metadata__");
                foreach ((string key, string value) in _metadata)
                    writer.WriteString(key, value);
                writer.WriteEndObject();
            }
            foreach ((string name, string dtype, long[] shape, long begin, long end) in _tensors)
            {
                writer.WriteStartObject(name);
                writer.WriteString("dtype", dtype);
                writer.WriteStartArray("shape");
                foreach (long dim in shape)
                    writer.WriteNumberValue(dim);
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(begin);
                writer.WriteNumberValue(end);
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        while (json.Length % 8 != 0)
            json.WriteByte((byte)' ');

        Span<byte> length = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
        _stream.Write(length);
        _stream.Write(json.GetBuffer().AsSpan(0, (int)json.Length));
    }
}
