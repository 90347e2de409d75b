using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace Llama.Compiled.Tests;

/// <summary>One tensor to write: its name, safetensors dtype, shape and raw little-endian bytes.</summary>
internal sealed record TestTensor(string Name, string DType, long[] Shape, byte[] Data);

/// <summary>Writes safetensors files for tests, valid ones from tensors and crafted ones from raw header text.</summary>
internal static class SafetensorsTestWriter
{
    /// <summary>Writes a valid safetensors file holding <paramref name="tensors"/> in order.</summary>
    public static void Write(string path, params TestTensor[] tensors) => File.WriteAllBytes(path, Build(tensors));

    /// <summary>The bytes of a valid safetensors file: tensors stored back to back, header padded with spaces to 8 bytes as the reference writer does.</summary>
    public static byte[] Build(params TestTensor[] tensors)
    {
        var header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        var data = new MemoryStream();
        foreach (TestTensor tensor in tensors)
        {
            long begin = data.Length;
            data.Write(tensor.Data);
            header.Append(CultureInfo.InvariantCulture,
                $",\"{tensor.Name}\":{{\"dtype\":\"{tensor.DType}\",\"shape\":[{string.Join(",", tensor.Shape)}],\"data_offsets\":[{begin},{data.Length}]}}");
        }
        header.Append('}');
        while (Encoding.UTF8.GetByteCount(header.ToString()) % 8 != 0)
            header.Append(' ');
        return BuildRaw(header.ToString(), data.ToArray());
    }

    /// <summary>A file made of the header length, <paramref name="headerJson"/> exactly as given, then <paramref name="data"/>.</summary>
    public static byte[] BuildRaw(string headerJson, byte[] data)
    {
        byte[] json = Encoding.UTF8.GetBytes(headerJson);
        return BuildRaw((ulong)json.Length, json, data);
    }

    /// <summary>A file with an arbitrary (possibly wrong) header length field.</summary>
    public static byte[] BuildRaw(ulong headerLength, byte[] json, byte[] data)
    {
        var file = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, headerLength);
        json.CopyTo(file, 8);
        data.CopyTo(file, 8 + json.Length);
        return file;
    }

    public static byte[] F32(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    public static byte[] F16(params Half[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(i * 2), values[i]);
        return bytes;
    }

    /// <summary>BF16 bit patterns (the upper 16 bits of an F32).</summary>
    public static byte[] BF16(params ushort[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), values[i]);
        return bytes;
    }

    /// <summary>Writes a sharded model: each shard file, plus <c>model.safetensors.index.json</c> mapping every tensor to its shard.</summary>
    public static void WriteSharded(string folder, params (string File, TestTensor[] Tensors)[] shards)
    {
        var entries = new List<string>();
        foreach ((string file, TestTensor[] tensors) in shards)
        {
            Write(Path.Combine(folder, file), tensors);
            foreach (TestTensor tensor in tensors)
                entries.Add($"\"{tensor.Name}\":\"{file}\"");
        }
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"),
            $"{{\"metadata\":{{\"total_size\":0}},\"weight_map\":{{{string.Join(",", entries)}}}}}");
    }
}
