using System;
using System.IO;
using System.IO.MemoryMappedFiles;

namespace Llama.Compiled;

/// <summary>
/// A whole file mapped read-only, with its base pointer acquired for the lifetime of this object.
/// Holding the pointer keeps the view's SafeHandle referenced, so even a leaked (never disposed)
/// mapping is never unmapped under a reader.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private bool _disposed;

    private MappedFile(string path, long length, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* pointer)
    {
        Path = path;
        Length = length;
        _map = map;
        _view = view;
        Pointer = pointer;
    }

    /// <summary>Full path of the file, for error messages.</summary>
    public string Path { get; }

    /// <summary>Size of the file in bytes when it was mapped; every read must stay below it.</summary>
    public long Length { get; }

    /// <summary>Address of the file's first byte.</summary>
    public byte* Pointer { get; }

    /// <summary>Maps <paramref name="path"/>; an empty file is a <see cref="ModelFormatException"/> (it cannot be mapped).</summary>
    public static MappedFile Open(string path)
    {
        // Checked before opening: opening a FIFO blocks until a writer appears, and devices and FIFOs
        // report length 0, so "empty" here also rejects everything that is not a regular file.
        var info = new FileInfo(path);
        if (info.Exists && info.Length == 0)
            throw new ModelFormatException($"{path}: the file is empty (or not a regular file)");
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            long length = stream.Length;
            if (length == 0)
                throw new ModelFormatException($"{path}: the file is empty");

            // The length is passed explicitly: the view's Capacity is rounded up to a page, and bytes
            // past the end of the file must never be treated as file content.
            map = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return new MappedFile(path, length, map, view, pointer + view.PointerOffset);
        }
        catch
        {
            // The map owns the stream once it exists (leaveOpen: false).
            view?.Dispose();
            if (map is null)
                stream.Dispose();
            else
                map.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
