using System;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Llama.Compiled;

/// <summary>
/// A whole file in memory, read-only: either mapped, with its base pointer acquired for the lifetime of
/// this object (holding the pointer keeps the view's SafeHandle referenced, so even a leaked, never
/// disposed mapping is never unmapped under a reader), or copied into memory this object owns
/// (<see cref="WeightLoading.Copy"/>; a leaked copy is never freed, so never freed under a reader either).
/// </summary>
internal sealed unsafe partial class MappedFile : IDisposable
{
    /// <summary>Alignment of a copy: one x86-64 huge page, so the kernel can back it with 2 MB pages from its first byte.</summary>
    private const int HugePageBytes = 2 << 20;

    /// <summary>Linux madvise advice: back this range with transparent huge pages where possible.</summary>
    private const int MadviseHugePage = 14;

    /// <summary>Bytes read per call when copying (a span holds at most 2 GB).</summary>
    private const int CopyChunkBytes = 1 << 30;

    /// <summary>A cache line: a copy puts a chosen file offset on a multiple of this.</summary>
    private const int CacheLineBytes = 64;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _copy; // the allocation holding a copy (Pointer may start a few bytes into it), else null
    private bool _disposed;

    private MappedFile(string path, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* copy, byte* pointer)
    {
        Path = path;
        Length = length;
        _map = map;
        _view = view;
        _copy = copy;
        Pointer = pointer;
    }

    /// <summary>Full path of the file, for error messages.</summary>
    public string Path { get; }

    /// <summary>Size of the file in bytes when it was mapped; every read must stay below it.</summary>
    public long Length { get; }

    /// <summary>Address of the file's first byte.</summary>
    public byte* Pointer { get; }

    /// <summary>True for a <see cref="WeightLoading.Copy"/>: memory this object owns, which the weights may rearrange in place.</summary>
    public bool IsCopy => _copy is not null;

    /// <summary>
    /// Maps or copies <paramref name="path"/> as <paramref name="loading"/> says; an empty file is a
    /// <see cref="ModelFormatException"/> (it cannot be mapped). A copy is placed so that the byte at
    /// <paramref name="lineAlignedOffset"/> (where the tensor data starts) begins a cache line; a mapping
    /// has the file's own alignment.
    /// </summary>
    public static MappedFile Open(string path, WeightLoading loading = WeightLoading.Map, long lineAlignedOffset = 0)
    {
        // Checked before opening: opening a FIFO blocks until a writer appears, and devices and FIFOs
        // report length 0, so "empty" here also rejects everything that is not a regular file.
        var info = new FileInfo(path);
        if (info.Exists && info.Length == 0)
            throw new ModelFormatException($"{path}: the file is empty (or not a regular file)");
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (loading == WeightLoading.Copy)
        {
            using (stream)
                return Copy(path, stream, (int)((CacheLineBytes - lineAlignedOffset % CacheLineBytes) % CacheLineBytes));
        }
        if (loading is not (WeightLoading.Map or WeightLoading.MapWithoutCache))
        {
            stream.Dispose();
            throw new ArgumentOutOfRangeException(nameof(loading), loading, "not a WeightLoading value");
        }
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
            return new MappedFile(path, length, map, view, null, pointer + view.PointerOffset);
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

    /// <summary>Reads the whole file into huge-page-aligned memory this object owns, <paramref name="shift"/> bytes in.</summary>
    private static MappedFile Copy(string path, FileStream stream, int shift)
    {
        long length = stream.Length;
        if (length == 0)
            throw new ModelFormatException($"{path}: the file is empty");
        byte* memory = AllocateWeightMemory((nuint)(length + shift));
        byte* start = memory + shift;
        try
        {
            for (long offset = 0; offset < length;)
            {
                int chunk = (int)Math.Min(CopyChunkBytes, length - offset);
                int read = RandomAccess.Read(stream.SafeFileHandle, new Span<byte>(start + offset, chunk), offset);
                if (read == 0)
                    throw new ModelFormatException($"{path}: the file shrank from {length} to {offset} bytes while it was read");
                offset += read;
            }
            return new MappedFile(path, length, null, null, memory, start);
        }
        catch
        {
            NativeMemory.AlignedFree(memory);
            throw;
        }
    }

    /// <summary>
    /// Memory for weights, freed with <see cref="NativeMemory.AlignedFree"/>: from 2 MB on, aligned to a huge page and
    /// advised to be backed by huge pages (before the first touch, so the pages are huge from the start; without the
    /// advice, on other systems or with huge pages off, the memory works the same on ordinary pages); smaller
    /// blocks on a cache line.
    /// </summary>
    internal static byte* AllocateWeightMemory(nuint length)
    {
        if (length < HugePageBytes)
            return (byte*)NativeMemory.AlignedAlloc(Math.Max(length, 1), CacheLineBytes);
        byte* memory = (byte*)NativeMemory.AlignedAlloc(length, HugePageBytes);
        if (OperatingSystem.IsLinux())
        {
            try
            {
                _ = Madvise(memory, length, MadviseHugePage);
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // A C library the loader cannot find by the name "libc": only the advice is lost.
            }
        }
        return memory;
    }

    /// <summary>Linux madvise advice: drop this range from the process's page tables (a file's pages stay in the page cache).</summary>
    private const int MadviseDontNeed = 4;

    /// <summary>
    /// Takes the pages inside [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>) of a
    /// mapping out of the process's resident set, for a range it has read once and will not read again (a tensor
    /// converted into the weight cache); a later read maps them again from the page cache. Does nothing for a copy,
    /// whose pages would be lost, or off Linux.
    /// </summary>
    public void ReleasePages(long offset, long length)
    {
        if (IsCopy || !OperatingSystem.IsLinux())
            return;
        const long PageBytes = 4096;
        long start = ((nint)Pointer + offset + PageBytes - 1) & ~(PageBytes - 1), end = ((nint)Pointer + offset + length) & ~(PageBytes - 1);
        if (end <= start)
            return;
        try
        {
            _ = Madvise((void*)start, (nuint)(end - start), MadviseDontNeed);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Only the resident set is larger.
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (_copy is not null)
        {
            NativeMemory.AlignedFree(_copy);
            return;
        }
        _view!.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map!.Dispose();
    }
}
